//! `kindling store push|pull|prune`: kindling-store's revisions, from and to an asset directory,
//! and the old ones deleted.

use anyhow::Context as _;
use kindling_store::{Address, Store};

use crate::cli::{EtcdTlsArgs, StoreCommand};
use crate::exit::Failure;

/// The secrets every replica must share, which a push keeps as the store has them (taken from
/// there when the directory has none, made by the first push): the key the machines' tokens are
/// made with, and the admin token of the dashboard and the API.
pub const PINNED: [kindling_store::Pinned; 2] = [
    kindling_store::Pinned {
        path: kindling_server::token::KEY_FILE,
        why: "every token handed out to the machines would stop working",
        flag: "--rotate-token-key",
        make: |dir| kindling_server::token::TokenKey::load_or_create(dir).map(|_| ()),
    },
    kindling_store::Pinned {
        path: kindling_server::ui::auth::TOKEN_FILE,
        why: "every dashboard session and every script holding the admin token would be refused",
        flag: "--rotate-token-key",
        make: |dir| kindling_server::ui::auth::AdminToken::load_or_create(dir).map(|_| ()),
    },
];

pub fn run(command: &StoreCommand) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match command {
        StoreCommand::Push(args) => {
            let store = open(&args.store.store, &args.store.tls)?;
            let dir = &args.dir.dir;
            let options = kindling_store::PushOptions {
                blobs_to: args.blobs_to.as_deref(),
                pinned: &PINNED,
                replace: args.rotate_token_key,
            };
            let pushed = runtime
                .block_on(kindling_store::push(&store, dir, &options))
                .with_context(|| format!("pushing {} to {}", dir.display(), store.describe()))?;
            for taken in &pushed.taken {
                eprintln!("{taken}: this directory had none; taken from the store");
            }
            if args.json {
                let json = serde_json::json!({
                    "revision": pushed.revision,
                    "new": pushed.new,
                    "chunksWritten": pushed.chunks_written,
                    "bytesWritten": pushed.bytes_written,
                });
                println!("{json:#}");
            } else if pushed.new {
                println!(
                    "revision {}: {} files ({} bytes), {} chunks ({} bytes) written to {}",
                    pushed.revision.number,
                    pushed.revision.files,
                    pushed.revision.bytes,
                    pushed.chunks_written,
                    pushed.bytes_written,
                    store.describe()
                );
            } else {
                println!(
                    "unchanged: revision {} is already this directory",
                    pushed.revision.number
                );
            }
        }
        StoreCommand::Pull(args) => {
            let store = open(&args.store.store, &args.store.tls)?;
            let sources = kindling_store::BlobSources {
                dirs: args.blobs_from.clone(),
            };
            std::fs::create_dir_all(&args.dir)
                .with_context(|| format!("creating {}", args.dir.display()))?;
            let pulled = runtime
                .block_on(kindling_store::pull(
                    &store,
                    args.revision,
                    &args.dir,
                    &sources,
                ))
                .with_context(|| format!("pulling from {}", store.describe()))?;
            println!(
                "revision {} ({} files, pushed {} from {}) written to {}",
                pulled.revision.number,
                pulled.revision.files,
                pulled.revision.pushed_at,
                pulled.revision.pushed_from,
                args.dir.display()
            );
            for entry in &pulled.missing {
                eprintln!(
                    "not written: {} ({}) is kept outside etcd; copy it there, or pull with --blobs-from",
                    entry.path, entry.digest
                );
            }
        }
        StoreCommand::Prune(args) => {
            let store = open(&args.store.store, &args.store.tls)?;
            let pruned = runtime
                .block_on(kindling_store::prune(&store, args.keep))
                .with_context(|| format!("pruning {}", store.describe()))?;
            if args.json {
                let json = serde_json::json!({
                    "kept": pruned.kept,
                    "removed": pruned.removed,
                    "blobsRemoved": pruned.blobs_removed,
                    "chunksRemoved": pruned.chunks_removed,
                });
                println!("{json:#}");
            } else {
                let span = |numbers: &[u64]| match numbers {
                    [] => "none".to_string(),
                    [one] => one.to_string(),
                    [first, .., last] => format!("{first}-{last} ({})", numbers.len()),
                };
                println!(
                    "kept revisions {}; removed revisions {}, {} blobs ({} chunks) only they used",
                    span(&pruned.kept),
                    span(&pruned.removed),
                    pruned.blobs_removed,
                    pruned.chunks_removed
                );
            }
        }
    }
    Ok(())
}

/// The store at `address` (etcd://...), reached with `tls`.
pub fn open(address: &str, tls: &EtcdTlsArgs) -> anyhow::Result<Store> {
    let address = Address::parse(address, tls.etcd_ca.is_some())?;
    let identity = match (&tls.etcd_ca, &tls.etcd_cert, &tls.etcd_key) {
        (Some(ca), Some(cert), Some(key)) => kindling_etcd::ClientTls::from_files(ca, cert, key)?,
        _ => {
            tracing::warn!(
                "no --etcd-ca: speaking to etcd over plain HTTP; the store holds the cluster's keys"
            );
            kindling_etcd::ClientTls::none()
        }
    };
    let etcd = kindling_etcd::Client::new(&address.endpoints, &identity)?;
    Ok(Store::new(etcd, &address.prefix))
}
