// Leakscope's Node.js snapshot client, the JavaScript twin of
// `leakscope-agent node-snapshot PID` (and of `nodes`, as `node - list`). Fed to the container's own node through
// exec stdin (`node - PID`) where /tmp is noexec and our static helper cannot
// run: nothing is written to the container.
//
// It opens the inspector of node process PID (SIGUSR1) unless one is already
// open, takes a heap snapshot over the inspector websocket, writes the
// snapshot's bytes to stdout as the chunks arrive (pausing the socket while
// stdout is full, so it never holds the snapshot), and closes the inspector
// again if it opened it. Status lines go to stderr, prefixed `leakscope:`;
// a failure is one `leakscope-error:` line and exit code 1.
'use strict';
const fs = require('fs');
const http = require('http');
const net = require('net');
const crypto = require('crypto');

const DEFAULT_PORT = 9229;
const say = (line) => process.stderr.write(`leakscope: ${line}\n`);
const fail = (message) => {
  process.stderr.write(`leakscope-error: ${message}\n`);
  process.exit(1);
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Listening TCP sockets of the container's network namespace: inode -> {host, port}.
function listeners() {
  const found = new Map();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = fs.readFileSync(file, 'utf8'); } catch (_) { continue; }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue;
      const [address, port] = f[1].split(':');
      const anyAddress = /^0+$/.test(address);
      const loopback = address === '0100007F' || address === '00000000000000000000000001000000';
      found.set(f[9], { host: anyAddress || loopback ? '127.0.0.1' : null, port: parseInt(port, 16) });
    }
  }
  return found;
}

// Socket inodes the process holds open.
function socketsOf(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch (_) { /* closed meanwhile */ }
  }
  return inodes;
}

function get(port, path) {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, timeout: 2000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (d) => { body += d; if (body.length > 1 << 20) request.destroy(new Error('answer too long')); });
      response.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(new Error(`not an inspector answer: ${e.message}`)); } });
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 2 s')));
    request.on('error', reject);
  });
}

// The process's own open inspector, if any: a port it listens on that answers /json/list.
async function openInspector(pid) {
  const own = socketsOf(pid);
  for (const [inode, where] of listeners()) {
    if (!own.has(inode) || where.host === null) continue;
    try {
      const targets = await get(where.port, '/json/list');
      if (Array.isArray(targets) && targets[0] && targets[0].webSocketDebuggerUrl) return where.port;
    } catch (_) { /* an ordinary server of the application */ }
  }
  return null;
}

function flagsOf(pid) {
  const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  let options = '';
  try {
    const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    options = (environ.find((v) => v.startsWith('NODE_OPTIONS=')) || '').slice('NODE_OPTIONS='.length);
  } catch (_) { /* another user's environ */ }
  return cmdline.concat(options.split(/\s+/));
}

// A minimal websocket client (RFC 6455) over net: Node 18 and 20 have no global WebSocket.
class Socket {
  constructor(socket) {
    this.socket = socket;
    this.pending = [];
    this.pendingBytes = 0;
    this.fragments = [];
    this.onMessage = () => {};
    socket.on('data', (data) => this.receive(data));
  }

  static connect(url) {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: u.hostname, port: Number(u.port) });
      const key = crypto.randomBytes(16).toString('base64');
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.write(`GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
      let head = Buffer.alloc(0);
      const onData = (data) => {
        head = Buffer.concat([head, data]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.removeListener('data', onData);
        const status = head.slice(0, end).toString('latin1');
        const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        if (!/^HTTP\/1\.1 101/.test(status) || !status.includes(accept)) {
          reject(new Error(`the inspector refused the websocket: ${status.split('\r\n')[0]}`));
          return;
        }
        const ws = new Socket(socket);
        const rest = head.slice(end + 4);
        if (rest.length) ws.receive(rest);
        resolve(ws);
      };
      socket.on('data', onData);
    });
  }

  send(message) {
    const payload = Buffer.from(JSON.stringify(message));
    const mask = crypto.randomBytes(4);
    let header;
    if (payload.length < 126) {
      header = Buffer.from([0x81, 0x80 | payload.length]);
    } else if (payload.length < 65536) {
      header = Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 255]);
    } else {
      header = Buffer.alloc(10);
      header[0] = 0x81; header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(payload.length), 2);
    }
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    this.socket.write(Buffer.concat([header, mask, payload]));
  }

  receive(data) {
    this.pending.push(data);
    this.pendingBytes += data.length;
    for (;;) {
      if (this.pendingBytes < 2) return;
      const buffer = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
      this.pending = [buffer];
      const fin = (buffer[0] & 0x80) !== 0;
      const opcode = buffer[0] & 0x0f;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) { if (buffer.length < 4) return; length = buffer.readUInt16BE(2); offset = 4; }
      else if (length === 127) { if (buffer.length < 10) return; length = Number(buffer.readBigUInt64BE(2)); offset = 10; }
      if (buffer.length < offset + length) return;
      const payload = buffer.slice(offset, offset + length);
      this.pending = buffer.length > offset + length ? [buffer.slice(offset + length)] : [];
      this.pendingBytes = buffer.length - offset - length;
      if (opcode === 8) { this.socket.end(); return; }
      if (opcode === 9 || opcode === 10) continue; // ping/pong: the inspector sends none
      this.fragments.push(payload);
      if (!fin) continue;
      const text = Buffer.concat(this.fragments).toString('utf8');
      this.fragments = [];
      this.onMessage(JSON.parse(text));
    }
  }
}

// `node - list`: the node processes, as `leakscope-agent nodes` prints them.
function list() {
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a);
      let exe = '';
      try { exe = fs.readlinkSync(`/proc/${pid}/exe`); } catch (_) { /* another user's */ }
      const base = (p) => (p || '').split('/').pop();
      if (!['node', 'nodejs'].includes(base(exe)) && !['node', 'nodejs'].includes(base(cmdline[0]))) continue;
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const field = (key) => ((status.split('\n').find((l) => l.startsWith(key)) || '').split(/\s+/));
      const flags = flagsOf(pid);
      process.stdout.write([pid, field('Uid:')[2], field('Gid:')[2],
        flags.some((f) => f.startsWith('--inspect')) ? 'flag' : '-',
        flags.includes('--disable-sigusr1') ? 'disabled' : 'enabled',
        field('VmRSS:')[1] || '0', cmdline.join(' ').replace(/[\t\n]/g, ' ')].join('\t') + '\n');
    } catch (_) { /* exited meanwhile */ }
  }
}

async function main() {
  if (process.argv[2] === 'list') return list();
  const pid = Number(process.argv[2]);
  if (!Number.isInteger(pid) || pid <= 0) fail('usage: node - PID | node - list');
  let flags;
  try { flags = flagsOf(pid); } catch (e) { fail(`no process ${pid} in this container (${e.code || e.message})`); }
  let port = await openInspector(pid);
  const opened = port === null;
  if (opened) {
    if (flags.includes('--disable-sigusr1')) {
      fail(`node ${pid} was started with --disable-sigusr1, so its inspector cannot be opened from outside; start it with --inspect=127.0.0.1:9229 instead`);
    }
    for (const [inode, where] of listeners()) {
      if (where.port === DEFAULT_PORT) {
        fail(`port ${DEFAULT_PORT}, where node opens its inspector on SIGUSR1, is already taken in this container (socket ${inode}, not node ${pid}'s); free it, or start node with --inspect=127.0.0.1:PORT`);
      }
    }
    try { process.kill(pid, 'SIGUSR1'); } catch (e) { fail(`cannot signal node ${pid}: ${e.code}`); }
    const deadline = Date.now() + 10000;
    while ((port = await openInspector(pid)) === null) {
      if (Date.now() > deadline) {
        fail(`node ${pid} did not open its inspector within 10 s of SIGUSR1: the application handles SIGUSR1 itself, or a policy (--disallow-code-generation, a permission model) blocks the inspector`);
      }
      await sleep(100);
    }
    say(`opened ${port}`);
  } else {
    say(`reused ${port}`);
  }
  const version = await get(port, '/json/version').catch(() => ({}));
  say(`version ${String(version.Browser || '').replace(/^node\.js\//i, '') || '-'}`);
  const targets = await get(port, '/json/list');
  const ws = await Socket.connect(targets[0].webSocketDebuggerUrl);
  ws.socket.on('error', (e) => fail(`inspector connection: ${e.message}`));
  ws.socket.on('close', () => { if (!finished) fail(`node ${pid} closed the inspector connection mid-snapshot (did it exit?)`); });
  let finished = false;
  const started = Date.now();
  await new Promise((resolve) => {
    ws.onMessage = (message) => {
      if (message.method === 'HeapProfiler.addHeapSnapshotChunk') {
        if (!process.stdout.write(message.params.chunk)) {
          ws.socket.pause();
          process.stdout.once('drain', () => ws.socket.resume());
        }
      } else if (message.method === 'HeapProfiler.reportHeapSnapshotProgress') {
        say(`progress ${message.params.done} ${message.params.total}`);
      } else if (message.id === 1) {
        if (message.error) fail(`the inspector refused the snapshot: ${message.error.message}`);
        say(`paused_ms ${Date.now() - started}`);
        resolve();
      }
    };
    ws.send({ id: 1, method: 'HeapProfiler.takeHeapSnapshot', params: { reportProgress: true } });
  });
  if (opened) {
    // Node stops its inspector and drops this connection itself (as the helper does).
    ws.send({ id: 2, method: 'Runtime.evaluate', params: { expression: 'process._debugEnd(), 0' } });
  }
  finished = true;
  ws.socket.end();
  if (opened) {
    const deadline = Date.now() + 5000;
    while (await openInspector(pid) !== null) {
      if (Date.now() > deadline) fail(`node ${pid}'s inspector is still open on port ${port} after the snapshot; restart the process to close it`);
      await sleep(100);
    }
    say('closed');
  }
  await new Promise((resolve) => process.stdout.write('', resolve));
}

main().catch((e) => fail(e.message));
