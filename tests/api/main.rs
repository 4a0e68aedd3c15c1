//! Integration tests: the real gateway on port 0, real TLS handshakes with real certificates,
//! real signed tokens, a real database (SQLite and a throwaway PostgreSQL cluster).

mod audit;
mod cli;
mod consent_live;
mod consents;
mod crl;
mod demo;
mod emergency;
mod handshake;
mod records_api;
mod records_store;
mod reload;
mod replicas;
mod robustness;
mod storage;
mod support;
mod token_times;
mod tokens;
