//! A tiny HTTP receiver for the end-to-end tests: what systems and weir
//! post (webhooks, alerts), passed on through a channel.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

/// One request received by [`http_receiver`]: lower-case header names, body
/// (JSON, or a JSON string when it is not JSON).
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

/// A tiny HTTP receiver on 127.0.0.1 (webhooks of a real system, alerts):
/// answers 200 to every request (one at a time) and passes it on; its port.
pub fn http_receiver() -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = HashMap::new();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_lowercase(), v.trim().to_string());
                }
            }
            let mut body = Vec::new();
            if let Some(n) = headers.get("content-length") {
                body.resize(n.parse().unwrap(), 0);
                reader.read_exact(&mut body).unwrap();
            } else if headers
                .get("transfer-encoding")
                .is_some_and(|t| t.contains("chunked"))
            {
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let n = usize::from_str_radix(line.trim(), 16).unwrap();
                    let mut chunk = vec![0; n + 2];
                    reader.read_exact(&mut chunk).unwrap();
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            }
            let body = serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
            // Passed on before the reply: once the sender has its answer, the
            // request is in the channel.
            let gone = tx
                .send(Received {
                    path,
                    headers,
                    body,
                })
                .is_err();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if gone {
                return;
            }
        }
    });
    (port, rx)
}
