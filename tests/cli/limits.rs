//! `kindling serve` past its limits: out of file descriptors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use kindling_testkit::Daemon;

use crate::ignition_configs::demo_on_loopback;
use crate::kindling;
use crate::serve::http_get;

/// One request on a kept-alive connection: the status.
fn keep_alive_get(stream: &mut TcpStream, path: &str) -> u16 {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: kindling\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The process's CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name, which is in parentheses: utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// At its limit of open files (`ulimit -n 64`), serve goes on serving the connections it has,
/// says so once (not once per failed accept), does not spin, and takes connections again once
/// some are closed.
#[test]
fn serve_out_of_file_descriptors_serves_what_it_has_without_spinning_and_recovers() {
    let (http_port, mcs_port) = (kindling_testkit::port(), kindling_testkit::port());
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let dir = demo_on_loopback(http_port, mcs_port);
    let d = dir.path();
    kindling(&["create", "ignition-configs", "--dir", d.to_str().unwrap()]).expect(0);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" serve --dir "$1" --http "$2" --mcs "$3""#)
        .arg(env!("CARGO_BIN_EXE_kindling"))
        .arg(d)
        .arg(http.to_string())
        .arg(format!("127.0.0.1:{mcs_port}"));
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("serve.log");
    let mut server = Daemon::spawn("kindling serve", command, &log)
        .unwrap_or_else(|e| panic!("{e}"))
        .terminate_on_drop();
    server
        .wait_ready("/healthz", Duration::from_secs(60), |_| {
            http_get(http, "/healthz").0 == 200
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let ipxe = "/ipxe?mac=52-54-00-7e-01-20";
    let mut kept = TcpStream::connect(http).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(keep_alive_get(&mut kept, ipxe), 200);

    // More idle connections than it has descriptors: the rest wait in the listen queue.
    let flood: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(http).unwrap())
        .collect();
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            if text.contains(what) {
                return text;
            }
            assert!(Instant::now() < deadline, "no {what:?} in:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("cannot accept connections");
    let (ticks, started) = (cpu_ticks(server.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    // The connection it has is still served.
    assert_eq!(keep_alive_get(&mut kept, ipxe), 200);
    let spent = (cpu_ticks(server.pid()) - ticks) as f64 / 100.0;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        spent < elapsed * 0.2,
        "{spent:.2} s of CPU in {elapsed:.2} s while out of descriptors: a busy loop"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("cannot accept connections").count(),
        1,
        "logged once, not per failed accept:\n{text}"
    );

    // Load drops: new connections are served again (after the ones that waited), and once no
    // accept has failed for a while, the log says so.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let served = http_get(http, ipxe).0 == 200;
        let text = std::fs::read_to_string(&log).unwrap();
        if served && text.contains("accepting connections again") {
            assert!(text.contains("failed accepts"), "{text}");
            assert_eq!(
                text.matches("cannot accept connections").count(),
                1,
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.exited().is_none(), "{}", server.log());
}
