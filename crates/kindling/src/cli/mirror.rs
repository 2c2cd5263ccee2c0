//! `kindling mirror`: fills `<dir>/mirror` from image archives and directories of binaries, then
//! says what the machines still lack.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use kindling_mirror::{Store, import};
use serde_json::json;

use crate::cli::MirrorArgs;
use crate::cli::create::load;
use crate::exit::{Code, Failure};

pub fn run(args: &MirrorArgs) -> Result<(), Failure> {
    let dir = &args.dir.dir;
    let description = load(dir)?;
    let version = &description.inventory.kubernetes.version;
    let root = dir.join(kindling_assets::payload::MIRROR_DIR);
    let store = Store::open(&root).with_context(|| format!("opening {}", root.display()))?;
    let show = !args.json && std::io::stderr().is_terminal();

    let mut images = Vec::new();
    for archive in &args.from_archive {
        let bar = bar(show, &archive.display().to_string(), size_of(archive));
        let imported = import::archive(&store, archive, args.name_as.as_deref(), &mut |n| {
            bar.inc(n)
        })
        .with_context(|| format!("taking images from {}", archive.display()))?;
        bar.finish_and_clear();
        for image in imported {
            if !args.json {
                println!(
                    "image  {}  {}  {}",
                    image.reference,
                    image.digest,
                    size(image.bytes)
                );
            }
            images.push(json!({
                "image": image.reference.to_string(),
                "digest": image.digest.to_string(),
                "bytes": image.bytes,
                "from": archive.display().to_string(),
            }));
        }
    }

    let mut files = Vec::new();
    if let Some(from) = &args.from_dir {
        let got = import::binaries(&store, from, version)
            .with_context(|| format!("taking binaries from {}", from.display()))?;
        for ignored in &got.ignored {
            tracing::warn!(
                "{}: not a node binary kindling knows; left out",
                from.join(ignored).display()
            );
        }
        files.extend(got.stored);
    }
    // The agent the bootstrap machine and the masters run: this very binary.
    let exe = std::env::current_exe().context("finding the kindling binary")?;
    let known = store
        .files()
        .ok()
        .and_then(|f| f.get("kindling").map(|r| r.size));
    let exe_size = std::fs::metadata(&exe).map(|m| m.len()).ok();
    if known != exe_size {
        let file =
            std::fs::File::open(&exe).with_context(|| format!("reading {}", exe.display()))?;
        files.push(
            store
                .put_file("kindling", file, None, &exe.display().to_string())
                .with_context(|| format!("storing {} in {}", exe.display(), root.display()))?,
        );
    }
    if !args.json {
        for file in &files {
            println!(
                "file   {}  sha256:{}  {}",
                file.path,
                file.sha256,
                size(file.size)
            );
        }
    }

    let ca_pem = match &args.ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    if let Some(base) = &args.from_release {
        let progress = bar(show, "node binaries", 0);
        let stored = kindling_mirror::release::fetch(
            &store,
            version,
            (!base.is_empty()).then_some(base.as_str()),
            ca_pem.as_deref(),
            &mut |_, n| progress.inc(n),
        )
        .context("downloading the node binaries")?;
        progress.finish_and_clear();
        files.extend(stored);
        // Fedora CoreOS publishes its PXE images with a stream's metadata; the other OSes' come
        // from where the README's "OS images" says.
        let provisioning = &description.inventory.provisioning;
        if provisioning.os == kindling_config::inventory::Os::Fcos
            && provisioning.os_images == Default::default()
        {
            let assets = dir.join("assets/fcos");
            let progress = bar(show, "Fedora CoreOS PXE images", 0);
            let written = kindling_mirror::release::fetch_fcos(
                &assets,
                "stable",
                (!base.is_empty()).then_some(base.as_str()),
                ca_pem.as_deref(),
                &mut |_, n| progress.inc(n),
            )
            .context("downloading Fedora CoreOS's PXE images")?;
            progress.finish_and_clear();
            for name in written {
                if !args.json {
                    println!("os     {}", assets.join(&name).display());
                }
            }
        }
    }
    if let Some(via) = &args.from_registry {
        let (_, wanted) =
            kindling_assets::payload::missing(dir, &description).map_err(|e| anyhow!(e))?;
        let credentials = match &args.registry_creds {
            Some(creds) => Some(
                creds
                    .split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
                    .ok_or_else(|| Failure {
                        code: Code::Usage,
                        error: Some(anyhow!("--registry-creds takes USER:PASSWORD")),
                    })?,
            ),
            None => None,
        };
        let source = kindling_mirror::fetch::Source {
            via: (!via.is_empty()).then(|| via.clone()),
            ca_pem: ca_pem.clone(),
            credentials,
        };
        let puller = kindling_mirror::fetch::Puller::new(&source).map_err(|e| anyhow!(e))?;
        for image in &wanted {
            let reference: kindling_mirror::Reference =
                image.parse().map_err(|e: String| anyhow!(e))?;
            let bar = bar(show, image, 0);
            let pulled = puller
                .pull(&store, &reference, &mut |n| bar.inc(n))
                .with_context(|| format!("pulling {image}"))?;
            bar.finish_and_clear();
            if !args.json {
                println!(
                    "image  {}  {}  {}",
                    pulled.reference,
                    pulled.digest,
                    size(pulled.bytes)
                );
            }
            images.push(json!({
                "image": pulled.reference.to_string(),
                "digest": pulled.digest.to_string(),
                "bytes": pulled.bytes,
                "from": source.via.clone().unwrap_or_else(|| reference.registry.clone()),
            }));
        }
    }

    let (missing_files, missing_images) =
        kindling_assets::payload::missing(dir, &description).map_err(|e| anyhow!(e))?;
    if args.json {
        let out = json!({
            "images": images,
            "files": files,
            "missing": {"files": missing_files, "images": missing_images},
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    if missing_files.is_empty() && missing_images.is_empty() {
        if !args.json {
            println!(
                "{} holds everything the machines need. Next: kindling create ignition-configs --dir {}",
                root.display(),
                dir.display()
            );
        }
        return Ok(());
    }
    let mut lacks = Vec::new();
    if !missing_files.is_empty() {
        lacks.push(format!(
            "node binaries for Kubernetes {version}: {} (give --from-dir a directory with kubelet, crictl or crictl-*.tar.gz, and cni-plugins-*.tgz or cni/)",
            missing_files.join(", ")
        ));
    }
    if !missing_images.is_empty() {
        lacks.push(format!(
            "images: {} (give --from-archive the output of docker save or skopeo copy for each, or pull them with --from-registry)",
            missing_images.join(", ")
        ));
    }
    Err(Failure {
        code: Code::MirrorIncomplete,
        error: Some(anyhow!(
            "{} still lacks {}",
            root.display(),
            lacks.join("; and ")
        )),
    })
}

/// Bytes in the archive (a file, or every file of a layout directory): the ETA's total.
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let blobs = path.join("blobs/sha256");
    std::fs::read_dir(blobs)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn bar(show: bool, what: &str, total: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    // A registry says each blob's size only as it comes to it: no total, no ETA.
    let (bar, template) = if total == 0 {
        (
            ProgressBar::new_spinner(),
            "{spinner} {msg} {bytes} {bytes_per_sec}",
        )
    } else {
        (
            ProgressBar::new(total),
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{bytes} bytes")
    }
}
