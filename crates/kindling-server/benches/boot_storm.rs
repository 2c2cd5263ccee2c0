//! A boot storm against a running `kindling serve`: many machines network-boot at once, each as
//! the real firmware and Ignition would, and the whole storm is timed.
//!
//! Each simulated machine fetches `/boot.ipxe`, follows its `chain` line to `/ipxe` with its own
//! MAC, takes the Ignition URL (with its token) from the kernel arguments, fetches its pointer
//! config from `/ignition`, and finally its pool config from the machine config server over TLS
//! (trusting `tls/root-ca.crt`), with the MAC and token headers the pointer config names. Every
//! step must answer 200 with the expected content, or it counts as an error.
//!
//! Raw HTTP/1.1 over `TcpStream`, so the client does as little as possible: iPXE's two requests
//! share a keep-alive connection, the pointer config gets one of its own and the pool config a TLS
//! connection of its own (a full handshake each, as every booting machine does).
//!
//! Run (the asset directory must have been through `kindling create ignition-configs`, and
//! `kindling serve --dir DIR` must be running on the addresses its inventory names):
//!
//! ```sh
//! cargo bench -p kindling-server --bench boot_storm -- --dir DIR [--machines 5000] [--concurrency 64]
//! ```
//!
//! Without `--dir` it says so and does nothing, so `cargo bench` over the workspace passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kindling_config::Role;
use kindling_server::Catalog;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What Ignition 2.14 sends (as in the machine config server's tests).
const ACCEPT: &str = "application/vnd.coreos.ignition+json;version=3.3.0, */*;q=0.1";
/// No step of a healthy storm takes anywhere near this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

struct Options {
    dir: PathBuf,
    machines: usize,
    concurrency: usize,
}

fn options() -> Result<Option<Options>, String> {
    let mut dir = None;
    let mut machines = 5000;
    let mut concurrency = 64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--machines" => {
                machines = value("--machines")?
                    .parse()
                    .map_err(|e| format!("--machines: {e}"))?
            }
            "--concurrency" => {
                concurrency = value("--concurrency")?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            // cargo bench passes --bench; libtest's other flags mean nothing here.
            _ if arg.starts_with("--") => {}
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    Ok(dir.map(|dir| Options {
        dir,
        machines,
        concurrency: concurrency.max(1),
    }))
}

/// One machine of the storm.
struct Machine {
    mac: String,
}

/// The client side of the storm, shared by every task.
struct Client {
    /// `host:port` of the boot server, from provisioning.serverURL.
    http: String,
    tls: tokio_rustls::TlsConnector,
}

/// Which step a time or an error belongs to.
const STEPS: [&str; 4] = ["boot.ipxe", "ipxe", "ignition", "mcs"];

#[derive(Default)]
struct Outcome {
    /// Per step, the time of each successful request.
    times: [Vec<Duration>; 4],
    errors: Vec<String>,
    bytes: usize,
}

fn main() {
    let options = match options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            eprintln!(
                "boot_storm: give --dir DIR of a running `kindling serve` (see the top of benches/boot_storm.rs); nothing to do"
            );
            return;
        }
        Err(e) => {
            eprintln!("boot_storm: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(storm(options)) {
        eprintln!("boot_storm: {e}");
        std::process::exit(1);
    }
}

async fn storm(options: Options) -> Result<(), String> {
    let catalog = Catalog::load(&options.dir).map_err(|e| e.to_string())?;
    // The machines that walk the whole way: masters and workers (the bootstrap machine gets
    // bootstrap.ign, not a pointer to the machine config server).
    let machines: Vec<Machine> = catalog
        .machines
        .iter()
        .filter(|e| e.machine.role != Role::Bootstrap)
        .take(options.machines)
        .map(|e| Machine {
            mac: e.machine.macs[0].hexhyp(),
        })
        .collect();
    if machines.len() < options.machines {
        return Err(format!(
            "the inventory has only {} machines besides the bootstrap machine; asked for {}",
            machines.len(),
            options.machines
        ));
    }
    let http = catalog
        .server_url()
        .strip_prefix("http://")
        .ok_or("provisioning.serverURL is not http://")?
        .trim_end_matches('/')
        .to_string();
    let client = Arc::new(Client {
        http,
        tls: tls_connector(&options.dir)?,
    });
    drop(catalog);

    let machines = Arc::new(machines);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..options.concurrency {
        let (client, machines, next) = (client.clone(), machines.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(machine) = machines.get(i) else {
                    return outcome;
                };
                if let Err((step, e)) = boot(&client, machine, &mut outcome).await {
                    outcome
                        .errors
                        .push(format!("{} {}: {e}", machine.mac, STEPS[step]));
                }
            }
        }));
    }
    let mut total = Outcome::default();
    for task in tasks {
        let outcome = task.await.map_err(|e| e.to_string())?;
        for (all, times) in total.times.iter_mut().zip(outcome.times) {
            all.extend(times);
        }
        total.errors.extend(outcome.errors);
        total.bytes += outcome.bytes;
    }
    let elapsed = start.elapsed();

    println!(
        "boot storm: {} machines, {} at a time: {:.2} s, {} errors, {:.0} machines/s, {:.1} MB received",
        machines.len(),
        options.concurrency,
        elapsed.as_secs_f64(),
        total.errors.len(),
        machines.len() as f64 / elapsed.as_secs_f64(),
        total.bytes as f64 / 1e6
    );
    for (step, times) in STEPS.iter().zip(total.times.iter_mut()) {
        times.sort();
        let at = |q: f64| {
            times
                .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "  {step:<10} {:>6} ok   p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
            times.len(),
            at(0.5),
            at(0.9),
            at(0.99),
            times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }
    for e in total.errors.iter().take(10) {
        println!("  error: {e}");
    }
    if total.errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} machines failed to boot", total.errors.len()))
    }
}

fn tls_connector(dir: &Path) -> Result<tokio_rustls::TlsConnector, String> {
    let ca = dir.join("tls/root-ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots
            .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One machine's boot, step by step; the error names the step that failed.
async fn boot(
    client: &Client,
    machine: &Machine,
    outcome: &mut Outcome,
) -> Result<(), (usize, String)> {
    // iPXE: the chain script, then the machine's own script, on one connection.
    let mut ipxe = connect(&client.http).await.map_err(|e| (0, e))?;
    let t = Instant::now();
    let chain = get(&mut ipxe, &client.http, "/boot.ipxe", &[])
        .await
        .map_err(|e| (0, e))?;
    outcome.times[0].push(t.elapsed());
    outcome.bytes += chain.len();
    let chain = String::from_utf8_lossy(&chain);
    let url = chain
        .lines()
        .find_map(|l| l.strip_prefix("chain "))
        .ok_or((0, format!("no chain line in {chain:?}")))?;
    // What iPXE substitutes; ${mac:hexhyp} is the one that matters.
    let url = url
        .replace("${mac:hexhyp}", &machine.mac)
        .replace("${uuid}", "00000000-0000-0000-0000-000000000000")
        .replace("${hostname}", "")
        .replace("${serial}", "")
        .replace("${buildarch:uristring}", "x86_64");
    let path = path_of(&url, &client.http).map_err(|e| (1, e))?;

    let t = Instant::now();
    let script = get(&mut ipxe, &client.http, path, &[])
        .await
        .map_err(|e| (1, e))?;
    outcome.times[1].push(t.elapsed());
    outcome.bytes += script.len();
    drop(ipxe);
    let script = String::from_utf8_lossy(&script);
    let ignition_url = script
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("coreos.inst.ignition_url="))
        .ok_or((1, format!("no coreos.inst.ignition_url in {script:?}")))?;
    if !ignition_url.contains(&format!("mac={}", machine.mac)) || !ignition_url.contains("token=") {
        return Err((1, format!("{ignition_url} is not this machine's")));
    }
    let path = path_of(ignition_url, &client.http).map_err(|e| (2, e))?;

    // Ignition: the pointer config over plain HTTP.
    let t = Instant::now();
    let mut conn = connect(&client.http).await.map_err(|e| (2, e))?;
    let pointer = get(&mut conn, &client.http, path, &[])
        .await
        .map_err(|e| (2, e))?;
    drop(conn);
    outcome.times[2].push(t.elapsed());
    outcome.bytes += pointer.len();
    let pointer: serde_json::Value =
        serde_json::from_slice(&pointer).map_err(|e| (2, format!("not JSON: {e}")))?;
    let merge = &pointer["ignition"]["config"]["merge"][0];
    let source = merge["source"]
        .as_str()
        .ok_or((2, "no ignition.config.merge[0].source".to_string()))?;
    let headers: Vec<(String, String)> = merge["httpHeaders"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h["name"].as_str()?.into(), h["value"].as_str()?.into())))
        .collect();
    if !headers
        .iter()
        .any(|(n, v)| n == "X-Kindling-Mac" && *v == machine.mac)
    {
        return Err((
            2,
            format!("the pointer config names another MAC: {headers:?}"),
        ));
    }

    // Ignition again: the pool config from the machine config server, over a TLS connection
    // of its own.
    let rest = source
        .strip_prefix("https://")
        .ok_or((3, format!("{source} is not https://")))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_string();
    let t = Instant::now();
    let tcp = connect(authority).await.map_err(|e| (3, e))?;
    let name = ServerName::try_from(host).map_err(|e| (3, e.to_string()))?;
    let mut tls = client
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| (3, format!("TLS: {e}")))?;
    let mut extra: Vec<(&str, &str)> = vec![("Accept", ACCEPT)];
    extra.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let config = get(&mut tls, authority, path, &extra)
        .await
        .map_err(|e| (3, e))?;
    outcome.times[3].push(t.elapsed());
    outcome.bytes += config.len();
    let config: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| (3, format!("not JSON: {e}")))?;
    if config["ignition"]["version"] != "3.3.0" {
        return Err((
            3,
            format!("not a spec 3.3.0 config: {}", config["ignition"]),
        ));
    }
    Ok(())
}

/// The path and query of `url`, which must be on the boot server.
fn path_of<'u>(url: &'u str, authority: &str) -> Result<&'u str, String> {
    url.strip_prefix("http://")
        .and_then(|rest| rest.strip_prefix(authority))
        .ok_or_else(|| format!("{url} is not on http://{authority}"))
}

async fn connect(authority: &str) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(authority))
        .await
        .map_err(|_| format!("connecting to {authority}: timed out"))?
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// `GET path` on a keep-alive connection; the body of a 200 answer.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Vec<u8>, String> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: boot-storm\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tokio::time::timeout(STEP_TIMEOUT, async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending: {e}"))?;
        stream.flush().await.map_err(|e| format!("sending: {e}"))?;
        read_response(stream).await
    })
    .await
    .map_err(|_| format!("GET {path}: timed out"))?
    .map_err(|e| format!("GET {path}: {e}"))
}

/// Reads one response: its status line and headers, then a body of Content-Length bytes or
/// in chunks.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err("the connection closed before the headers ended".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|e| e.to_string())?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = buf.split_off(head_end);
    if chunked {
        body = read_chunked(stream, body).await?;
    } else {
        let length = length.ok_or("no Content-Length and not chunked")?;
        while body.len() < length {
            if read_more(stream, &mut body).await? == 0 {
                return Err("the connection closed in the body".into());
            }
        }
        body.truncate(length);
    }
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim_end()
        ));
    }
    Ok(body)
}

async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut pending: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if read_more(stream, &mut pending).await? == 0 {
                return Err("the connection closed in a chunk header".into());
            }
        };
        let size_text = String::from_utf8_lossy(&pending[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        pending.drain(..line_end + 2);
        while pending.len() < size + 2 {
            if read_more(stream, &mut pending).await? == 0 {
                return Err("the connection closed in a chunk".into());
            }
        }
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&pending[..size]);
        pending.drain(..size + 2);
    }
}
