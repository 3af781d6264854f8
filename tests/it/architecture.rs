//! The engine's module graph points one way.
//!
//! Reads every file under `src/` (the engine library; the binary's
//! `src/bin/` tree is outside it), collects the `crate::<module>` paths each
//! top-level module uses in code (comments and doc links do not count), and
//! checks that:
//! - no module depends on a module of a higher rank (CLI → orchestration →
//!   configuration → layers → table contracts → Delta table layer → storage
//!   → errors, redaction, the retry policy), so the graph has no circle;
//! - no layer (bronze, silver, gold, publish, maintenance) uses another one.
//!
//! Run alone with `cargo test --test it architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by rank: a module may use modules of a lower rank and
/// modules of its own rank except the layers (rank 4), which are siblings.
const RANKS: &[(&str, u8)] = &[
    ("pipeline", 6),
    ("config", 5),
    ("bronze", 4),
    ("silver", 4),
    ("gold", 4),
    ("publish", 4),
    ("maintenance", 4),
    ("tables", 3),
    ("spec", 2),
    ("delta", 2),
    ("cdc", 1),
    ("storage", 1),
    ("error", 0),
    ("redact", 0),
    ("retry", 0),
];

const LAYER_RANK: u8 = 4;

/// The `crate::<module>` uses of each top-level module, with where they are.
fn module_uses(src: &Path) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut uses: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let path_use = regex::Regex::new(r"crate::(\w+)").unwrap();
    let group_use = regex::Regex::new(r"crate::\{([^}]*)\}").unwrap();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let mut used: Vec<String> = path_use
                .captures_iter(code)
                .map(|c| c[1].to_string())
                .collect();
            for group in group_use.captures_iter(code) {
                used.extend(
                    group[1]
                        .split(',')
                        .filter_map(|part| part.trim().split("::").next())
                        .filter(|name| !name.is_empty())
                        .map(str::to_string),
                );
            }
            for target in used {
                // `crate::Result` / `crate::Error` are the re-exports of `error`.
                let target = match target.as_str() {
                    "Result" | "Error" => "error".to_string(),
                    _ => target,
                };
                if target != module {
                    uses.entry(module.clone())
                        .or_default()
                        .entry(target)
                        .or_default()
                        .push(format!("{}:{}", file.display(), number + 1));
                }
            }
        }
    }
    uses
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_depend_one_way_and_layers_never_on_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let uses = module_uses(&src);
    let rank: BTreeMap<&str, u8> = RANKS.iter().copied().collect();
    let mut problems = Vec::new();
    let declared: BTreeSet<&str> = rank.keys().copied().collect();
    for (module, targets) in &uses {
        let Some(&from) = rank.get(module.as_str()) else {
            problems.push(format!(
                "module `{module}` has no rank: add it to RANKS (known: {declared:?})"
            ));
            continue;
        };
        for (target, places) in targets {
            let Some(&to) = rank.get(target.as_str()) else {
                problems.push(format!(
                    "`{module}` uses `{target}`, which has no rank, at {}",
                    places[0]
                ));
                continue;
            };
            let sideways_layer = from == LAYER_RANK && to == LAYER_RANK;
            if to > from || sideways_layer {
                problems.push(format!(
                    "`{module}` (rank {from}) uses `{target}` (rank {to}) at {}",
                    places.join(", ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The check sees the real graph: the pipeline uses every layer.
    let pipeline = &uses["pipeline"];
    for layer in ["bronze", "silver", "gold", "publish", "maintenance"] {
        assert!(
            pipeline.contains_key(layer),
            "pipeline does not use {layer}"
        );
    }
}
