//! `ddim serve`: a small static file server for the web page (index.html, web/, pkg/ and the
//! model files), on 127.0.0.1 only. It serves GET and HEAD, refuses paths that leave the root,
//! and sends `application/wasm` so browsers can stream-compile the module.

use anyhow::Result;
use clap::Args as ClapArgs;
use ddim_webgpu::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Folder to serve (the repository root by default).
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

fn mime(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ts" | "md" | "yml" | "yaml" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn respond(mut s: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut line = String::new();
    let mut reader = BufReader::new(s.try_clone()?);
    reader.read_line(&mut line)?;
    // Drain the headers; nothing in them changes the answer.
    let mut h = String::new();
    while reader.read_line(&mut h)? > 2 {
        h.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let rel = Path::new(path.trim_start_matches('/'));
    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let mut file = root.join(rel);
    if file.is_dir() {
        file = file.join("index.html");
    }
    let (status, body, ctype) = match (method, safe, std::fs::read(&file)) {
        ("GET" | "HEAD", true, Ok(b)) => ("200 OK", b, mime(&file)),
        ("GET" | "HEAD", _, _) => ("404 Not Found", b"not found\n".to_vec(), "text/plain"),
        _ => (
            "405 Method Not Allowed",
            b"GET only\n".to_vec(),
            "text/plain",
        ),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        s.write_all(&body)?;
    }
    s.flush()
}

pub fn run(a: Args) -> Result<()> {
    let root = a.root.canonicalize().map_err(|e| Error::io(&a.root, e))?;
    let addr = format!("127.0.0.1:{}", a.port);
    let listener = TcpListener::bind(&addr)
        .map_err(|e| Error::Backend(format!("cannot listen on {addr}: {e}")))?;
    if !root.join("pkg").is_dir() {
        eprintln!(
            "note: {} has no pkg/ yet; build it with `bash web/build.sh`",
            root.display()
        );
    }
    eprintln!("serving {} on http://{addr}/", root.display());
    for s in listener.incoming().flatten() {
        let root = root.clone();
        std::thread::spawn(move || {
            let _ = respond(s, &root);
        });
    }
    Ok(())
}
