//! Integration tests, one binary (each file directly under tests/ would link
//! DataFusion again). Run with `scripts/test.sh`, which starts the external
//! services; `cargo test` alone runs everything that needs no external service.

mod architecture;
mod ballista;
mod bronze_file;
mod bronze_kafka;
mod compose;
mod dead_letters;
mod debezium_captured;
mod debezium_flow;
mod demo;
mod e2e;
mod gold_grafana;
mod gold_incremental;
mod gold_marts;
mod gold_publish;
mod gold_support;
mod init_validate;
mod installed;
mod kafka_security;
mod maintenance;
mod metrics;
mod mock_postgres;
mod mock_replay;
mod mock_roundtrip;
mod schedule_process;
mod schedule_retry;
mod schedule_run;
mod schedule_status;
mod schedule_support;
mod silver_crash;
mod silver_facts;
mod silver_mock;
mod silver_nulls;
mod silver_oracle;
mod silver_pruning;
mod silver_scd1;
mod silver_support;
mod storage_cli;
mod storage_concurrency;
mod storage_errors;
mod storage_flow;
mod storage_support;
mod storage_urls;
mod support;
mod watch;
