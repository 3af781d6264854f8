//! The docker-compose stack, checked without a Docker engine: the structure of
//! docker-compose.yaml (services, pinned images, healthchecks, dependencies,
//! volumes, variables, ports) and that the configs of its parts agree — the
//! Debezium connector, docker/lakehouse.toml, the silver specs, the mock's
//! schema, the serving Postgres and the Grafana datasource.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lakehouse::config::Config;
use lakehouse_mock::Table;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML file as JSON, with `<<` merge keys applied (as Compose does).
fn yaml(path: &str) -> Value {
    let mut doc: serde_norway::Value =
        serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    doc.apply_merge().expect("merge keys");
    serde_json::to_value(&doc).expect("yaml as json")
}

fn compose() -> Value {
    yaml("docker-compose.yaml")
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"].as_object().expect("services")
}

/// `NAME=value` lines of .env.example: (defined, documented in comments too).
fn env_example() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut defined = BTreeMap::new();
    let mut documented = BTreeSet::new();
    for line in read(".env.example").lines() {
        let (commented, line) = match line.trim().strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line.trim()),
        };
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        documented.insert(name.to_string());
        if !commented {
            // Compose's dotenv: an unquoted value ends at " #".
            let value = value.split(" #").next().unwrap_or_default().trim();
            defined.insert(name.to_string(), value.to_string());
        }
    }
    (defined, documented)
}

/// Interpolates `${NAME}`, `${NAME:-default}` and `$$` as Compose does.
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let re = regex::Regex::new(r"\$\$|\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}").expect("regex");
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let Some(name) = c.get(1) else {
            return "$".to_string();
        };
        match vars.get(name.as_str()) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => c.get(2).map_or(String::new(), |d| d.as_str().to_string()),
        }
    })
    .into_owned()
}

/// A service's environment, interpolated with the .env.example values.
fn environment(service: &Value) -> BTreeMap<String, Option<String>> {
    let (vars, _) = env_example();
    environment_with(service, &vars)
}

/// A service's environment, interpolated with `vars` (as from a .env file).
fn environment_with(
    service: &Value,
    vars: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    match &service["environment"] {
        Value::Object(map) => {
            for (k, v) in map {
                let value = match v {
                    Value::Null => None,
                    Value::String(s) => Some(interpolate(s, vars)),
                    other => Some(other.to_string()),
                };
                out.insert(k.clone(), value);
            }
        }
        Value::Null => {}
        other => panic!("environment must be a map: {other}"),
    }
    out
}

fn env_value(service: &Value, name: &str) -> String {
    environment(service)
        .get(name)
        .cloned()
        .flatten()
        .unwrap_or_else(|| panic!("{name} is not set"))
}

const REQUIRED: [&str; 11] = [
    "kafka",
    "source-postgres",
    "connect",
    "connect-register",
    "minio",
    "minio-init",
    "serving-postgres",
    "grafana",
    "mock",
    "bronze",
    "schedule",
];

/// One-shot services (init containers) are the ones that do not restart.
fn one_shot(service: &Value) -> bool {
    service["restart"].as_str() == Some("no")
}

#[test]
fn compose_services_are_pinned_healthy_and_ordered() {
    let compose = compose();
    let services = services(&compose);
    for name in REQUIRED {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    for (name, service) in services {
        // Pinned images, or the repository's Dockerfile.
        if let Some(build) = service.get("build") {
            assert_eq!(build, ".", "{name}: build context");
            assert!(repo().join("Dockerfile").is_file());
        } else {
            let image = service["image"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no image"));
            let last = image.rsplit('/').next().unwrap_or_default();
            let tag = last.split_once(':').map(|(_, t)| t).unwrap_or_default();
            assert!(
                !tag.is_empty() && tag != "latest" && !tag.contains('$'),
                "{name}: image {image} is not pinned to a tag"
            );
        }
        // Long-running services report their health.
        if !one_shot(service) {
            let test = &service["healthcheck"]["test"];
            assert!(
                test.as_array().is_some_and(|t| t.len() >= 2),
                "{name}: a long-running service needs a healthcheck"
            );
            assert_eq!(
                service["restart"], "unless-stopped",
                "{name}: restart policy"
            );
        }
        // Conditions on dependencies that exist.
        if let Some(deps) = service.get("depends_on") {
            let deps = deps
                .as_object()
                .unwrap_or_else(|| panic!("{name}: depends_on must use conditions"));
            for (dep, spec) in deps {
                let target = services
                    .get(dep)
                    .unwrap_or_else(|| panic!("{name} depends on unknown {dep}"));
                match spec["condition"].as_str() {
                    Some("service_healthy") => {
                        assert!(
                            target.get("healthcheck").is_some(),
                            "{name} waits for {dep}'s health, which it has not"
                        );
                    }
                    Some("service_completed_successfully") => {
                        assert!(
                            one_shot(target),
                            "{name} waits for {dep} to complete, but it restarts"
                        );
                    }
                    Some("service_started") => {}
                    other => panic!("{name} -> {dep}: condition {other:?}"),
                }
            }
        }
    }
    // No dependency cycles.
    fn visit<'a>(
        name: &'a str,
        services: &'a serde_json::Map<String, Value>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(name) {
            return;
        }
        assert!(
            !path.contains(&name),
            "dependency cycle: {path:?} -> {name}"
        );
        path.push(name);
        if let Some(deps) = services[name].get("depends_on").and_then(Value::as_object) {
            for dep in deps.keys() {
                visit(dep, services, path, done);
            }
        }
        path.pop();
        done.insert(name);
    }
    let mut done = BTreeSet::new();
    for name in services.keys() {
        visit(name, services, &mut Vec::new(), &mut done);
    }
    // The pipeline starts in order.
    let deps = |s: &str| -> BTreeSet<String> {
        services[s]["depends_on"]
            .as_object()
            .map_or_else(BTreeSet::new, |d| d.keys().cloned().collect())
    };
    assert!(deps("connect-register").contains("connect"));
    assert!(
        deps("bronze").is_superset(
            &["kafka", "minio-init", "connect-register"]
                .map(String::from)
                .into()
        )
    );
    assert!(deps("schedule").contains("serving-postgres"));
    assert!(deps("grafana").contains("serving-postgres"));
    assert!(deps("mock").contains("source-postgres"));
}

#[test]
fn compose_volumes_variables_and_ports() {
    let compose = compose();
    let services = services(&compose);
    let declared: BTreeSet<String> = compose["volumes"]
        .as_object()
        .expect("top-level volumes")
        .keys()
        .cloned()
        .collect();
    let mut used = BTreeSet::new();
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume
                .as_str()
                .unwrap_or_else(|| panic!("{name}: short volume syntax"));
            let source = spec.split(':').next().unwrap_or_default();
            if source.starts_with("./") {
                assert!(
                    repo().join(source).exists(),
                    "{name}: bind mount {source} does not exist"
                );
                assert!(
                    spec.ends_with(":ro"),
                    "{name}: configuration mounts are read-only: {spec}"
                );
            } else {
                assert!(
                    declared.contains(source),
                    "{name}: volume {source} is not declared"
                );
                used.insert(source.to_string());
            }
        }
    }
    assert_eq!(used, declared, "declared volumes that no service uses");

    // Every variable the file uses is in .env.example.
    let (defined, documented) = env_example();
    let text = read("docker-compose.yaml");
    let re = regex::Regex::new(r"\$\$|\$\{([A-Za-z0-9_]+)").expect("regex");
    let mut referenced = BTreeSet::new();
    for c in re.captures_iter(&text) {
        if let Some(name) = c.get(1) {
            referenced.insert(name.as_str().to_string());
        }
    }
    assert!(referenced.len() > 15, "{referenced:?}");
    for name in &referenced {
        assert!(
            defined.contains_key(name),
            "${{{name}}} is not in .env.example"
        );
    }
    // Pass-through variables (no value in the file) are at least documented.
    for (name, service) in services {
        for (var, value) in environment(service) {
            if value.is_none() {
                assert!(
                    documented.contains(&var),
                    "{name}: {var} is not documented in .env.example"
                );
            }
        }
    }
    // .env.example lists nothing the file does not use (ports, credentials...).
    let passthrough: BTreeSet<String> = services
        .values()
        .flat_map(|s| {
            environment(s)
                .into_iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k)
        })
        .collect();
    for name in documented {
        assert!(
            referenced.contains(&name) || passthrough.contains(&name),
            ".env.example: {name} is not used by docker-compose.yaml"
        );
    }

    // Host ports are unique.
    let mut ports = BTreeMap::new();
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            let spec = interpolate(port.as_str().expect("port string"), &defined);
            let host = spec
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .expect("host:container");
            if let Some(other) = ports.insert(host.clone(), name.clone()) {
                panic!("host port {host} is used by {other} and {name}");
            }
        }
    }
    assert!(ports.len() >= 7, "{ports:?}");
}

/// The topic pattern of docker/lakehouse.toml, anchored as the consumer anchors it.
fn topic_regex(toml: &toml::Value) -> regex::Regex {
    let pattern = toml["kafka"]["topic_pattern"]
        .as_str()
        .expect("kafka.topic_pattern");
    regex::Regex::new(&format!("^(?:{})$", pattern.trim_start_matches('^'))).expect("pattern")
}

fn lakehouse_toml() -> toml::Value {
    toml::from_str(&read("docker/lakehouse.toml")).expect("docker/lakehouse.toml")
}

#[test]
fn connector_lakehouse_config_silver_specs_and_mock_agree_on_topics() {
    let compose = compose();
    let services = services(&compose);
    let connector: Value =
        serde_json::from_str(&read("docker/debezium/shop-connector.json")).expect("connector json");
    let prefix = connector["topic.prefix"].as_str().expect("topic.prefix");
    let included: BTreeSet<String> = connector["table.include.list"]
        .as_str()
        .expect("table.include.list")
        .split(',')
        .map(|t| t.trim().to_string())
        .collect();
    let mock_tables: BTreeSet<String> = Table::ALL
        .iter()
        .map(|t| format!("public.{}", t.name()))
        .collect();
    assert_eq!(
        included, mock_tables,
        "the connector captures exactly the mock's tables"
    );
    assert_eq!(
        connector["publication.name"],
        lakehouse_mock::ddl::PUBLICATION
    );
    assert_eq!(connector["provide.transaction.metadata"], "true");
    assert_eq!(connector["value.converter.schemas.enable"], "true");
    // The mock's encoder writes the topics Debezium will.
    let encoder = lakehouse_mock::DebeziumEncoder::new(prefix);
    let topics: Vec<String> = Table::ALL
        .iter()
        .map(|t| encoder.topic(*t).to_string())
        .collect();
    for (table, topic) in Table::ALL.iter().zip(&topics) {
        assert_eq!(topic, &format!("{prefix}.public.{}", table.name()));
    }

    // The source database the connector reads is the one the mock writes.
    let source = &services["source-postgres"];
    assert_eq!(connector["database.hostname"], "source-postgres");
    assert_eq!(connector["database.port"], "5432");
    assert_eq!(
        connector["database.dbname"].as_str(),
        Some(env_value(source, "POSTGRES_DB").as_str())
    );
    let connect = &services["connect"];
    let env_ref = regex::Regex::new(r"\$\{env:([A-Z0-9_]+)\}").expect("regex");
    for (key, value) in connector.as_object().expect("connector object") {
        for c in env_ref.captures_iter(value.as_str().unwrap_or_default()) {
            let var = &c[1];
            assert!(
                environment(connect).contains_key(var),
                "{key}: ${{env:{var}}} is not in connect's environment"
            );
        }
    }
    assert_eq!(
        env_value(connect, "SOURCE_PG_USER"),
        env_value(source, "POSTGRES_USER")
    );
    assert_eq!(
        env_value(connect, "SOURCE_PG_PASSWORD"),
        env_value(source, "POSTGRES_PASSWORD")
    );
    assert_eq!(
        env_value(connect, "CONNECT_CONFIG_PROVIDERS_ENV_CLASS"),
        "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
    );
    let register = services["connect-register"].to_string();
    let name = connector["name"].as_str().expect("connector name");
    assert!(
        register.contains(&format!("http://connect:8083/connectors/{name}/config")),
        "{register}"
    );
    assert!(
        register.contains("@/connector/shop-connector.json"),
        "{register}"
    );
    let mock_url = url::Url::parse(&env_value(&services["mock"], "LAKEHOUSE_MOCK_POSTGRES_URL"))
        .expect("mock url");
    assert_eq!(mock_url.host_str(), Some("source-postgres"));
    assert_eq!(
        mock_url.path(),
        format!("/{}", env_value(source, "POSTGRES_DB"))
    );
    assert_eq!(mock_url.username(), env_value(source, "POSTGRES_USER"));
    assert_eq!(
        mock_url.password(),
        Some(env_value(source, "POSTGRES_PASSWORD").as_str())
    );

    // Bronze subscribes to every captured topic (and the transaction topic).
    let toml = lakehouse_toml();
    let pattern = topic_regex(&toml);
    for topic in topics
        .iter()
        .chain([encoder.transaction_topic().to_string()].iter())
    {
        assert!(
            pattern.is_match(topic),
            "{topic} does not match kafka.topic_pattern"
        );
    }
    for internal in [
        "_connect_configs",
        "_connect_offsets",
        "_connect_statuses",
        "__consumer_offsets",
    ] {
        assert!(
            !pattern.is_match(internal),
            "{internal} matches kafka.topic_pattern"
        );
        assert!(read("docker-compose.yaml").contains(internal) || internal.starts_with("__"));
    }
    let brokers = toml["kafka"]["brokers"].as_str().expect("kafka.brokers");
    let advertised = env_value(&services["kafka"], "KAFKA_ADVERTISED_LISTENERS");
    assert!(
        advertised
            .split(',')
            .any(|l| l == format!("PLAINTEXT://{brokers}")),
        "{advertised}"
    );
    assert_eq!(env_value(connect, "BOOTSTRAP_SERVERS"), brokers);

    // Every silver spec reads a topic Debezium writes.
    let mut sources = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("layers/silver")).expect("layers/silver") {
        let path = entry.expect("entry").path();
        let spec: toml::Value =
            toml::from_str(&std::fs::read_to_string(&path).expect("spec")).expect("spec toml");
        if let Some(topic) = spec
            .get("source")
            .and_then(|s| s.get("topic"))
            .and_then(toml::Value::as_str)
        {
            assert!(
                topics.iter().any(|t| t == topic),
                "{}: {topic} is not a captured topic",
                path.display()
            );
            assert!(
                pattern.is_match(topic),
                "{}: {topic} is not consumed",
                path.display()
            );
            sources.insert(topic.to_string());
        }
    }
    assert!(sources.len() >= 7, "{sources:?}");
}

#[test]
fn lakehouse_config_parses_and_points_at_the_stack() {
    let compose = compose();
    let services = services(&compose);
    let text = read("docker/lakehouse.toml");
    let file = Path::new("docker/lakehouse.toml");

    for name in ["bronze", "schedule"] {
        let service = &services[name];
        let command: Vec<&str> = service["command"]
            .as_array()
            .expect("command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(command[0], "lakehouse", "{name}");
        assert!(
            service["volumes"]
                .to_string()
                .contains("./docker/lakehouse.toml:/etc/lakehouse/lakehouse.toml:ro")
        );
        assert_eq!(
            env_value(service, "LAKEHOUSE_CONFIG"),
            "/etc/lakehouse/lakehouse.toml"
        );
        let overrides: Vec<(String, String)> = environment(service)
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .filter(|(k, _)| k.starts_with(lakehouse::config::ENV_PREFIX))
            .collect();
        // lakehouse's own loader, which also validates [schedule] (cron
        // expressions, job kinds, `after` references, cycles).
        let config =
            Config::parse(&text, file, overrides).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_schedule(&config.schedule.plan(file).unwrap_or_else(|e| panic!("{e}")));
        // Storage: the bucket minio-init creates, on MinIO.
        let bucket = env_value(&services["minio-init"], "LAKEHOUSE_BUCKET");
        assert!(
            config.storage.root.starts_with(&format!("s3://{bucket}/")),
            "{}",
            config.storage.root
        );
        let endpoint = url::Url::parse(&env_value(service, "AWS_ENDPOINT_URL")).expect("endpoint");
        assert_eq!(endpoint.host_str(), Some("minio"));
        assert!(services.contains_key("minio"));
        assert_eq!(
            env_value(service, "AWS_ACCESS_KEY_ID"),
            env_value(&services["minio"], "MINIO_ROOT_USER")
        );
        assert_eq!(
            env_value(service, "AWS_SECRET_ACCESS_KEY"),
            env_value(&services["minio"], "MINIO_ROOT_PASSWORD")
        );
        // Publishing: the serving Postgres, as its own user and database.
        let serving = &services["serving-postgres"];
        let url =
            url::Url::parse(config.postgres.url.as_deref().expect("postgres.url")).expect("url");
        assert_eq!(url.host_str(), Some("serving-postgres"));
        assert_eq!(url.port_or_known_default(), Some(5432));
        assert_eq!(url.username(), env_value(serving, "POSTGRES_USER"));
        assert_eq!(
            url.password(),
            Some(env_value(serving, "POSTGRES_PASSWORD").as_str())
        );
        assert_eq!(
            url.path(),
            format!("/{}", env_value(serving, "POSTGRES_DB"))
        );
        // The specs are where the image puts them.
        for dir in [
            &config.silver.layers_dir,
            &config.silver.sql_dir,
            &config.gold.layers_dir,
            &config.gold.sql_dir,
        ] {
            let relative = dir.strip_prefix("/app").expect("specs under /app");
            assert!(repo().join(relative).is_dir(), "{}", dir.display());
        }
    }
    assert_eq!(
        services["bronze"]["command"],
        serde_json::json!(["lakehouse", "run", "bronze"])
    );
    assert_eq!(
        services["schedule"]["command"],
        serde_json::json!(["lakehouse", "schedule"])
    );
    let dockerfile = read("Dockerfile");
    for line in [
        "FROM rust:1.95",
        "FROM debian:bookworm-slim",
        "WORKDIR /app",
        "COPY layers /app/layers",
        "COPY sql /app/sql",
        "-p lakehouse -p lakehouse-mock -p lakehouse-cluster --bins",
        "target/release/lakehouse-scheduler target/release/lakehouse-executor",
    ] {
        assert!(dockerfile.contains(line), "Dockerfile: {line}");
    }
    // The `ballista` profile: a scheduler and executors silver and gold use
    // when LAKEHOUSE_ENGINE_MODE=ballista, off by default.
    for name in ["ballista-scheduler", "ballista-executor"] {
        assert_eq!(
            services[name]["profiles"],
            serde_json::json!(["ballista"]),
            "{name}: only in the ballista profile"
        );
    }
    assert_eq!(
        services["ballista-scheduler"]["command"][0],
        "lakehouse-scheduler"
    );
    let executor = services["ballista-executor"]["command"].to_string();
    assert!(
        executor.contains("lakehouse-executor")
            && executor.contains("--scheduler-host ballista-scheduler"),
        "{executor}"
    );
    let text = read("docker-compose.yaml");
    assert!(text.contains("LAKEHOUSE_ENGINE__MODE: ${LAKEHOUSE_ENGINE_MODE:-local}"));
    assert!(text.contains("LAKEHOUSE_ENGINE__BALLISTA__SCHEDULER: df://ballista-scheduler:50050"));
}

/// The compose stack's schedule: bronze is its own service, so the
/// scheduler runs silver on a cron, gold right after each silver run, and
/// the nightly maintenance.
fn check_schedule(plan: &lakehouse::config::schedule::Plan) {
    use lakehouse::config::schedule::{JobKind, Timing};
    let job = |kind: JobKind| {
        plan.jobs
            .iter()
            .find(|j| j.kind == kind)
            .unwrap_or_else(|| panic!("no {} job in [schedule]", kind.name()))
    };
    let kinds: BTreeSet<JobKind> = plan.jobs.iter().map(|j| j.kind).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            JobKind::Silver,
            JobKind::Gold,
            JobKind::Optimize,
            JobKind::Vacuum
        ]),
        "bronze is its own service: {plan:?}"
    );
    let silver = job(JobKind::Silver);
    assert!(matches!(silver.timing, Timing::Cron(_)), "{silver:?}");
    let gold = job(JobKind::Gold);
    assert_eq!(gold.after, vec![silver.name.clone()], "{gold:?}");
    assert!(!plan.time_zone.is_empty());
}

/// Expands a provisioning value the way Grafana does, which is not the way
/// Compose does. Grafana's `pkg/services/provisioning/values`
/// (`interpolateValue`) splits the value on `$$` (a literal `$`), runs each
/// part through `setting.ExpandVar` — the regex `\$(|__\w+)\{([^}]+)\}`,
/// where an empty prefix or `__env` looks up the whole text between the
/// braces as a variable name — then through Go's `os.ExpandEnv`, and joins
/// the parts with `$`. Neither step knows a default: `${VAR:-x}` looks up a
/// variable literally named `VAR:-x`, so it expands to "".
fn grafana_expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let lookup = |name: &str| env.get(name).cloned().unwrap_or_default();
    let expanders = regex::Regex::new(r"\$(|__\w+)\{([^}]+)\}").expect("regex");
    value
        .split("$$")
        .map(|part| {
            let part = expanders.replace_all(part, |c: &regex::Captures<'_>| match &c[1] {
                "" | "__env" => lookup(&c[2]),
                other => panic!("the test does not implement Grafana's `{other}` expander"),
            });
            go_expand(&part, lookup)
        })
        .collect::<Vec<_>>()
        .join("$")
}

/// Go's `os.Expand` (src/os/env.go, Go 1.2x): `$name` takes the longest run
/// of ASCII letters, digits and `_`; `${...}` takes everything up to the
/// first `}` as the name; `${` without a `}` and `${}` are eaten; a `$`
/// followed by nothing that names a variable stays.
fn go_expand(s: &str, mapping: impl Fn(&str) -> String) -> String {
    let special = |c: u8| b"*#$@!?-0123456789".contains(&c);
    let bytes = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut j = 0;
    while j < bytes.len() {
        if bytes[j] == b'$' && j + 1 < bytes.len() {
            out.push_str(&s[i..j]);
            let rest = &s[j + 1..];
            let r = rest.as_bytes();
            // getShellName: (name, bytes consumed after the `$`).
            let (name, width) = if r[0] == b'{' {
                if r.len() > 2 && special(r[1]) && r[2] == b'}' {
                    (&rest[1..2], 3)
                } else {
                    match rest[1..].find('}') {
                        Some(0) => ("", 2),
                        Some(end) => (&rest[1..end + 1], end + 2),
                        None => ("", 1),
                    }
                }
            } else if special(r[0]) {
                (&rest[..1], 1)
            } else {
                let end = r
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .unwrap_or(r.len());
                (&rest[..end], end)
            };
            if name.is_empty() && width == 0 {
                out.push('$');
            } else if !name.is_empty() {
                out.push_str(&mapping(name));
            }
            j += width;
            i = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[i.min(s.len())..]);
    out
}

#[test]
fn grafana_expansion_follows_go() {
    let env = BTreeMap::from([
        ("HOST".to_string(), "db".to_string()),
        ("PORT".to_string(), "5432".to_string()),
    ]);
    let cases = [
        ("${HOST}:${PORT}", "db:5432"),
        ("$HOST:$PORT", "db:5432"),
        ("$HOST.x", "db.x"),
        // Compose's default syntax is not Grafana's: the name is `HOST:-x`.
        ("${HOST:-x}", ""),
        ("${MISSING:-fallback}", ""),
        ("$MISSING", ""),
        ("$__env{HOST}", "db"),
        ("a$$b", "a$b"),
        ("p$$HOST", "p$HOST"),
        ("cost $", "cost $"),
        ("${}x", "x"),
        ("${HOST", "HOST"),
        ("$%", "$%"),
    ];
    for (value, want) in cases {
        assert_eq!(grafana_expand(value, &env), want, "{value}");
    }
}

/// Every string in a provisioning document, with its path.
fn strings<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((path, s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                strings(v, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn grafana_datasource_reads_the_serving_postgres() {
    let compose = compose();
    let services = services(&compose);
    let grafana = &services["grafana"];
    let serving = &services["serving-postgres"];
    let datasource = yaml("grafana/provisioning/datasources/lakehouse.yaml");
    let source = &datasource["datasources"][0];
    assert_eq!(source["type"], "grafana-postgresql-datasource");
    let set = |env: BTreeMap<String, Option<String>>| -> BTreeMap<String, String> {
        env.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
    };
    // The container's environment with .env.example, and with no .env at
    // all: Compose always sets every variable the datasource reads.
    let env = set(environment(grafana));
    let bare = set(environment_with(grafana, &BTreeMap::new()));
    let reference = regex::Regex::new(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)").expect("regex");
    let mut values = Vec::new();
    strings(&datasource, String::new(), &mut values);
    for (path, value) in &values {
        for c in reference.captures_iter(value) {
            let name = c.get(1).or(c.get(2)).map_or("", |m| m.as_str());
            for env in [&env, &bare] {
                assert!(
                    env.get(name).is_some_and(|v| !v.is_empty()),
                    "{path}: `{value}` reads `{name}`, which the grafana service does not set"
                );
            }
        }
        if value.contains('$') {
            assert!(
                !grafana_expand(value, &bare).is_empty(),
                "{path}: `{value}` expands to nothing in Grafana"
            );
        }
    }
    // Resolved as Grafana resolves them, not as Compose would.
    let resolve = |v: &Value| grafana_expand(v.as_str().expect("string"), &env);
    let url = resolve(&source["url"]);
    assert_eq!(url, "serving-postgres:5432");
    assert!(services.contains_key(url.split(':').next().unwrap_or_default()));
    assert_eq!(
        resolve(&source["jsonData"]["database"]),
        env_value(serving, "POSTGRES_DB")
    );
    assert_eq!(resolve(&source["jsonData"]["sslmode"]), "disable");
    // A read-only role the serving database's init script creates for Grafana.
    let user = resolve(&source["user"]);
    assert_eq!(user, env_value(serving, "GRAFANA_PG_USER"));
    assert_eq!(
        resolve(&source["secureJsonData"]["password"]),
        env_value(serving, "GRAFANA_PG_PASSWORD")
    );
    let init = read("docker/serving-postgres/01-grafana-reader.sh");
    assert!(
        init.contains("GRANT SELECT ON ALL TABLES IN SCHEMA gold"),
        "{init}"
    );
    let toml = lakehouse_toml();
    assert_eq!(toml["postgres"]["schema"].as_str(), Some("gold"));
    // Provisioning and dashboards are mounted where the providers look.
    let volumes = grafana["volumes"].to_string();
    assert!(
        volumes.contains("./grafana/provisioning:/etc/grafana/provisioning:ro"),
        "{volumes}"
    );
    let providers = yaml("grafana/provisioning/dashboards/lakehouse.yaml");
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    assert!(
        volumes.contains(&format!("./grafana/dashboards:{path}:ro")),
        "{volumes}"
    );
}

#[test]
fn source_schema_is_the_mocks_ddl() {
    // One source of truth: docker/source-postgres is `lakehouse-mock ddl`.
    let file = read("docker/source-postgres/01-shop-schema.sql");
    assert_eq!(
        file,
        lakehouse_mock::ddl::schema_sql(),
        "docker/source-postgres/01-shop-schema.sql is stale: regenerate it with \
         `cargo run -p lakehouse-mock -- ddl > docker/source-postgres/01-shop-schema.sql`"
    );
    let compose = compose();
    let source = &services(&compose)["source-postgres"];
    let command = source["command"].to_string();
    assert!(command.contains("wal_level=logical"), "{command}");
    assert!(
        source["volumes"]
            .to_string()
            .contains("./docker/source-postgres:/docker-entrypoint-initdb.d:ro")
    );
    for table in Table::ALL {
        assert!(file.contains(&format!(
            "ALTER TABLE public.{} REPLICA IDENTITY FULL;",
            table.name()
        )));
    }
}

/// The serving database's init script, run against the test Postgres: the
/// Grafana role reads marts created after it ran (as each publish creates
/// them) and cannot write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_init_script_gives_grafana_read_only_access_to_gold() {
    use sqlx::Connection;
    let Some(admin) = crate::gold_support::postgres_url() else {
        return;
    };
    let url = crate::mock_postgres::fresh_database(&admin).await;
    let script = read("docker/serving-postgres/01-grafana-reader.sh");
    let sql = script
        .split_once("<<'SQL'\n")
        .and_then(|(_, rest)| rest.split_once("\nSQL"))
        .map(|(sql, _)| sql)
        .expect("the script's SQL heredoc");
    // psql's variables, as the script passes them.
    let role = crate::support::unique("grafana_");
    let sql = sql
        .replace(":\"reader\"", &format!("\"{role}\""))
        .replace(":'reader_password'", "'secret'");
    let mut owner = crate::gold_support::connect(&url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut owner)
        .await
        .expect("init script");
    // A mart published later (the publisher creates a table and swaps it in).
    sqlx::raw_sql("CREATE TABLE gold.daily_sales_staging AS SELECT 1 AS orders; ALTER TABLE gold.daily_sales_staging RENAME TO daily_sales; CREATE TABLE public.private AS SELECT 1 AS x;")
        .execute(&mut owner)
        .await
        .expect("mart");
    let mut reader_url = url::Url::parse(&url).expect("url");
    reader_url.set_username(&role).expect("username");
    let mut reader = sqlx::postgres::PgConnection::connect(reader_url.as_str())
        .await
        .expect("connect as the grafana role");
    let orders: i32 = sqlx::query_scalar("SELECT orders FROM gold.daily_sales")
        .fetch_one(&mut reader)
        .await
        .expect("grafana reads the mart");
    assert_eq!(orders, 1);
    let write = sqlx::query("INSERT INTO gold.daily_sales VALUES (2)")
        .execute(&mut reader)
        .await;
    assert!(write.is_err(), "the grafana role must not write");
    let other = sqlx::query("SELECT x FROM public.private")
        .execute(&mut reader)
        .await;
    assert!(other.is_err(), "the grafana role reads only gold");
    reader.close().await.expect("close");
    owner.close().await.expect("close");
}
