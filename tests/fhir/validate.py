#!/usr/bin/env python3
"""Validates FHIR R4 resources with an independent implementation.

Usage: validate.py FILE_OR_DIR...  (every *.json file; each holds one resource)

Each resource is parsed by the `fhir.resources` R4 (4.0.1) models (structure, cardinality,
types, primitive formats, no unknown elements), then checked against the required value-set
bindings and the invariants the models do not enforce for the resources the gateway emits.
Prints one line per file and exits 1 if any fails, 2 if the validator itself is unusable.
"""
import json
import pathlib
import sys

try:
    import fhir.resources
    from fhir.resources import construct_fhir_element
except ImportError as e:  # pragma: no cover - reported loudly to the Rust test
    print(f"fhir.resources is not installed ({e}); install tests/fhir/requirements.txt", file=sys.stderr)
    sys.exit(2)

if getattr(fhir.resources, "__fhir_version__", None) != "4.0.1":
    print(
        f"fhir.resources {fhir.resources.__version__} models FHIR "
        f"{getattr(fhir.resources, '__fhir_version__', '?')}, not R4 4.0.1; "
        "install tests/fhir/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(2)

# Required bindings (FHIR R4 value sets) of the elements the gateway emits.
CONSENT_STATE = {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
PROVISION_TYPE = {"deny", "permit"}
TASK_STATUS = {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
               "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
TASK_INTENT = {"unknown", "proposal", "plan", "order", "original-order", "reflex-order",
               "filler-order", "instance-order", "option"}
REQUEST_PRIORITY = {"routine", "urgent", "asap", "stat"}
BUNDLE_TYPE = {"document", "message", "transaction", "transaction-response", "batch",
               "batch-response", "history", "searchset", "collection"}
SEARCH_MODE = {"match", "include", "outcome"}
ISSUE_SEVERITY = {"fatal", "error", "warning", "information"}
ISSUE_TYPE = {"invalid", "structure", "required", "value", "invariant", "security", "login",
              "unknown", "expired", "forbidden", "suppressed", "processing", "not-supported",
              "duplicate", "multiple-matches", "not-found", "deleted", "too-long",
              "code-invalid", "extension", "too-costly", "business-rule", "conflict",
              "transient", "lock-error", "no-store", "exception", "timeout", "incomplete",
              "throttled", "informational"}
NARRATIVE_STATUS = {"generated", "extensions", "additional", "empty"}
ENTITY_ROLE = {"derivation", "revision", "quotation", "source", "removal"}
RESTFUL_INTERACTION = {"read", "vread", "update", "patch", "delete", "history-instance",
                       "history-type", "create", "search-type"}
CONFIDENTIALITY = {"U", "L", "M", "N", "R", "V"}


def need(cond, msg, errors):
    if not cond:
        errors.append(msg)


def check_meta(res, where, errors):
    for c in (res.get("meta") or {}).get("security", []):
        if c.get("system") == "http://terminology.hl7.org/CodeSystem/v3-Confidentiality":
            need(c.get("code") in CONFIDENTIALITY, f"{where}.meta.security: bad confidentiality {c}", errors)
    text = res.get("text")
    if text:
        need(text.get("status") in NARRATIVE_STATUS, f"{where}.text.status", errors)
        need(text.get("div", "").startswith('<div xmlns="http://www.w3.org/1999/xhtml">'),
             f"{where}.text.div must be an XHTML div", errors)


def check(res, where, errors):
    rt = res.get("resourceType")
    check_meta(res, where, errors)
    if rt == "Consent":
        need(res.get("status") in CONSENT_STATE, f"{where}.status", errors)
        # ppc-1: a policy or a policy rule; ppc-2: a privacy consent names the patient.
        need(res.get("policy") or res.get("policyRule"), f"{where}: ppc-1 (policy or policyRule)", errors)
        scope = [c.get("code") for c in (res.get("scope") or {}).get("coding", [])]
        if "patient-privacy" in scope:
            need(res.get("patient"), f"{where}: ppc-2 (patient)", errors)
        prov = res.get("provision") or {}
        if "type" in prov:
            need(prov["type"] in PROVISION_TYPE, f"{where}.provision.type", errors)
        for i, c in enumerate(res.get("contained", [])):
            check(c, f"{where}.contained[{i}]", errors)
    elif rt == "Task":
        need(res.get("status") in TASK_STATUS or "_status" in res, f"{where}.status", errors)
        need(res.get("intent") in TASK_INTENT, f"{where}.intent", errors)
        if "priority" in res:
            need(res["priority"] in REQUEST_PRIORITY, f"{where}.priority", errors)
    elif rt == "Bundle":
        need(res.get("type") in BUNDLE_TYPE, f"{where}.type", errors)
        urls = [e.get("fullUrl") for e in res.get("entry", []) if e.get("fullUrl")]
        need(len(urls) == len(set(urls)), f"{where}: bdl-7 (fullUrl unique)", errors)
        if res.get("type") != "searchset":
            need("total" not in res, f"{where}: bdl-1 (total only in searchsets)", errors)
        for i, e in enumerate(res.get("entry", [])):
            if "search" in e:
                need(res.get("type") == "searchset", f"{where}: bdl-2 (search only in searchsets)", errors)
                need(e["search"].get("mode") in SEARCH_MODE, f"{where}.entry[{i}].search.mode", errors)
            check(e["resource"], f"{where}.entry[{i}].resource", errors)
    elif rt == "OperationOutcome":
        for i, issue in enumerate(res.get("issue", [])):
            need(issue.get("severity") in ISSUE_SEVERITY, f"{where}.issue[{i}].severity", errors)
            need(issue.get("code") in ISSUE_TYPE, f"{where}.issue[{i}].code", errors)
    elif rt == "Provenance":
        for i, e in enumerate(res.get("entity", [])):
            need(e.get("role") in ENTITY_ROLE, f"{where}.entity[{i}].role", errors)
    elif rt == "CapabilityStatement":
        need(res.get("fhirVersion") == "4.0.1", f"{where}.fhirVersion", errors)
        for rest in res.get("rest", []):
            for r in rest.get("resource", []):
                for it in r.get("interaction", []):
                    need(it.get("code") in RESTFUL_INTERACTION, f"{where}: interaction {it}", errors)


def validate(path):
    data = json.loads(path.read_text())
    rt = data.get("resourceType")
    construct_fhir_element(rt, data)
    errors = []
    check(data, rt, errors)
    if errors:
        raise ValueError("; ".join(errors))
    return rt


def main(args):
    files = []
    for a in args:
        p = pathlib.Path(a)
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not files:
        print("no resources to validate", file=sys.stderr)
        return 2
    failed = 0
    for f in files:
        try:
            rt = validate(f)
            print(f"ok {f.name} ({rt})")
        except Exception as e:  # every failure is reported, with the file
            failed += 1
            print(f"FAIL {f.name}: {e}")
    print(f"{len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
