//! Diagnostics output. Handlers are instrumented with `skip_all`: spans carry request ids,
//! partner ids, record ids and pseudonyms, never tokens or personal data. actix's own line per
//! refused request is silenced (unless the filter names `actix_http`): the connection edge
//! logs those, throttled ([`crate::edge::report_connection_end`]).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber (once; later calls are ignored). Output goes to stderr.
pub fn init(settings: &LogSettings) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| EnvFilter::try_new(&text).ok().map(|f| (f, text)));
    let (mut filter, text) = from_env
        .or_else(|| {
            EnvFilter::try_new(&settings.filter)
                .ok()
                .map(|f| (f, settings.filter.clone()))
        })
        .unwrap_or_else(|| (EnvFilter::new("info"), "info".to_owned()));
    // actix logs one ERROR line per refused request; the edge logs them instead, throttled.
    if let Some(directive) = crate::edge::quiet_dispatcher_directive(&text)
        && let Ok(d) = directive.parse()
    {
        filter = filter.add_directive(d);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
