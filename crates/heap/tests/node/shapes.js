// Known shapes for the V8 front end's tests: writes a heap snapshot to argv[2].
//   sessions   a Map of N Session objects, each holding its own array of K numbers
//   requestBus an EventEmitter with L 'shutdown' listeners, each closure keeping its own array
// (arrays, not strings: V8 shares the parts of padded or repeated strings.)
const v8 = require('v8');
const EventEmitter = require('events');
const [out, n = '2000', k = '1000', l = '300'] = process.argv.slice(2);

class Session {
  constructor(i) {
    this.id = i;
    this.payload = new Array(Number(k)).fill(i);
  }
}

global.sessions = new Map();
for (let i = 0; i < Number(n); i++) global.sessions.set(i, new Session(i));

global.requestBus = new EventEmitter();
global.requestBus.setMaxListeners(0);
for (let i = 0; i < Number(l); i++) {
  const kept = new Array(500).fill(i);
  global.requestBus.on('shutdown', () => kept.length);
}

v8.writeHeapSnapshot(out);
