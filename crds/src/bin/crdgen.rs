//! crdgen: writes the Herald CRDs (generated from the Rust types) as YAML.
//!
//! Without arguments prints every CRD to stdout as one multi-document stream; with
//! `--out DIR` writes one `<plural>.herald.dev.yaml` per CRD into DIR (the chart's `crds/`),
//! and with `--check` compares DIR instead of writing it. The rendering itself lives in
//! `herald_crds::api::generate`; this file is only the I/O edge.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use herald_crds::api::generate::{REGENERATE_COMMAND, render_all};

/// Write the herald.dev CustomResourceDefinitions as YAML.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory to write one YAML file per CRD into (e.g. charts/herald/crds).
    /// Without it, every CRD is printed to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// With --out: do not write, exit non-zero if the files in DIR differ from the types.
    #[arg(long, requires = "out")]
    check: bool,
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let files = render_all()?;
    let Some(dir) = args.out else {
        let documents: Vec<&str> = files.iter().map(|f| f.contents.as_str()).collect();
        print!("{}", documents.join("---\n"));
        return Ok(ExitCode::SUCCESS);
    };
    if args.check {
        let mut stale = Vec::new();
        for file in &files {
            let path = dir.join(&file.file_name);
            if fs::read_to_string(&path).ok().as_deref() != Some(file.contents.as_str()) {
                stale.push(path.display().to_string());
            }
        }
        if stale.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "CRD YAML out of date: {}\nregenerate with: {REGENERATE_COMMAND}",
            stale.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in &files {
        let path = dir.join(&file.file_name);
        fs::write(&path, &file.contents).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
