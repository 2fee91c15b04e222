//! Test support: a small HPROF writer (for graphs of chosen shape and for
//! re-encoding a real dump with 4-byte ids) and a JVM that leaks on demand.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Writer {
    id_size: usize,
    out: Vec<u8>,
    seg: Vec<u8>,
}

fn put_id(buf: &mut Vec<u8>, id_size: usize, v: u64) {
    if id_size == 4 {
        buf.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

impl Writer {
    pub fn new(id_size: usize) -> Self {
        let mut out = b"JAVA PROFILE 1.0.2\0".to_vec();
        out.extend_from_slice(&(id_size as u32).to_be_bytes());
        out.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        Writer { id_size, out, seg: Vec::new() }
    }

    fn record(&mut self, tag: u8, body: &[u8]) {
        self.out.push(tag);
        self.out.extend_from_slice(&0u32.to_be_bytes());
        self.out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        self.out.extend_from_slice(body);
    }

    pub fn string(&mut self, id: u64, text: &str) {
        let mut body = Vec::new();
        put_id(&mut body, self.id_size, id);
        body.extend_from_slice(text.as_bytes());
        self.record(0x01, &body);
    }

    pub fn load_class(&mut self, class_id: u64, name_id: u64) {
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_be_bytes());
        put_id(&mut body, self.id_size, class_id);
        body.extend_from_slice(&0u32.to_be_bytes());
        put_id(&mut body, self.id_size, name_id);
        self.record(0x02, &body);
    }

    pub fn root(&mut self, kind: u8, id: u64) {
        self.seg.push(kind);
        put_id(&mut self.seg, self.id_size, id);
        match kind {
            0x01 => put_id(&mut self.seg, self.id_size, 0),
            0x02 | 0x03 | 0x08 => self.seg.extend_from_slice(&[0; 8]),
            0x04 | 0x06 => self.seg.extend_from_slice(&[0; 4]),
            _ => {}
        }
        self.end_subrecord();
    }

    /// A class dump: `statics` are reference-typed static fields, `fields` instance fields (name id, type).
    pub fn class_dump(&mut self, class_id: u64, super_id: u64, statics: &[(u64, u64)], fields: &[(u64, u8)]) {
        let s = &mut self.seg;
        s.push(0x20);
        put_id(s, self.id_size, class_id);
        s.extend_from_slice(&0u32.to_be_bytes());
        for v in [super_id, 0, 0, 0, 0, 0] {
            put_id(s, self.id_size, v);
        }
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&0u16.to_be_bytes());
        s.extend_from_slice(&(statics.len() as u16).to_be_bytes());
        for &(name, value) in statics {
            put_id(s, self.id_size, name);
            s.push(2);
            put_id(s, self.id_size, value);
        }
        s.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for &(name, t) in fields {
            put_id(s, self.id_size, name);
            s.push(t);
        }
        self.end_subrecord();
    }

    /// An instance whose fields are all references (in dump order).
    pub fn instance(&mut self, id: u64, class_id: u64, refs: &[u64]) {
        let s = &mut self.seg;
        s.push(0x21);
        put_id(s, self.id_size, id);
        s.extend_from_slice(&0u32.to_be_bytes());
        put_id(s, self.id_size, class_id);
        s.extend_from_slice(&((refs.len() * self.id_size) as u32).to_be_bytes());
        for &r in refs {
            put_id(s, self.id_size, r);
        }
        self.end_subrecord();
    }

    pub fn object_array(&mut self, id: u64, class_id: u64, elements: &[u64]) {
        let s = &mut self.seg;
        s.push(0x22);
        put_id(s, self.id_size, id);
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&(elements.len() as u32).to_be_bytes());
        put_id(s, self.id_size, class_id);
        for &e in elements {
            put_id(s, self.id_size, e);
        }
        self.end_subrecord();
    }

    pub fn byte_array(&mut self, id: u64, n: usize) {
        let s = &mut self.seg;
        s.push(0x23);
        put_id(s, self.id_size, id);
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&(n as u32).to_be_bytes());
        s.push(8);
        s.extend(std::iter::repeat_n(0u8, n));
        self.end_subrecord();
    }

    /// Ends the heap dump segment once it passes 512 bytes, as HotSpot does at
    /// 1 MiB, so that tests see many segments (they are parsed in parallel).
    fn end_subrecord(&mut self) {
        if self.seg.len() >= 512 {
            let seg = std::mem::take(&mut self.seg);
            self.record(0x1C, &seg);
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        let seg = std::mem::take(&mut self.seg);
        self.record(0x1C, &seg);
        self.record(0x2C, &[]);
        self.out
    }
}

/// The Java fixture compiled once per test process. Tests run in parallel: the
/// lock makes the others wait for the first compile instead of starting a JVM on a
/// class file javac is still writing (seen on CI as a class-loading error).
pub fn compiled_fixture() -> PathBuf {
    static COMPILED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("leakscope-java-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/LeakMain.java");
            let status = Command::new("javac").arg("-d").arg(&dir).arg(src).status().expect("javac (openjdk-17-jdk-headless) is installed");
            assert!(status.success());
            dir
        })
        .clone()
}

/// A running `LeakMain`; killed on drop.
pub struct Jvm {
    pub child: Child,
}

impl Jvm {
    pub fn start(jvm_flags: &[&str], args: &[&str]) -> Jvm {
        let classes = compiled_fixture();
        let mut child = Command::new("java")
            .args(jvm_flags)
            .arg("-cp")
            .arg(&classes)
            .arg("LeakMain")
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("java runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Jvm { child }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// `jmap -histo:live`: class name (source form) → (instances, bytes), summed over loaders.
    pub fn histogram(&self) -> std::collections::HashMap<String, (u64, u64)> {
        let out = Command::new("jmap").args(["-histo:live", &self.pid()]).output().unwrap();
        assert!(out.status.success());
        let mut map = std::collections::HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() >= 4 && parts[0].ends_with(':') {
                let (Ok(n), Ok(b)) = (parts[1].parse::<u64>(), parts[2].parse::<u64>()) else { continue };
                let name = leakscope_heap::source_name(parts[3]);
                let e = map.entry(name).or_insert((0, 0));
                e.0 += n;
                e.1 += b;
            }
        }
        map
    }

    /// `jcmd GC.heap_dump` (checking its output: jcmd exits 0 even when the dump failed).
    pub fn dump(&self, path: &Path, gzip: bool) {
        let _ = std::fs::remove_file(path);
        let mut args = vec![self.pid(), "GC.heap_dump".to_string()];
        if gzip {
            args.push("-gz=1".into());
        }
        args.push(path.display().to_string());
        let out = Command::new("jcmd").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Heap dump file created"), "jcmd said: {text}");
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
