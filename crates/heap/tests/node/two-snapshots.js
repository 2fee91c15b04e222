// Two heap snapshots of one process, with known changes between them:
// OUT1 holds 3 000 Gone objects; then they are dropped and 5 000 Grow
// objects (each with a 100-element array) are made before OUT2.
// Usage: node two-snapshots.js OUT1 OUT2
'use strict';
const v8 = require('v8');
const [first, second] = process.argv.slice(2);

class Gone { constructor(i) { this.i = i; } }
class Grow { constructor(i) { this.i = i; this.values = new Array(100).fill(i); } }

globalThis.gone = Array.from({ length: 3000 }, (_, i) => new Gone(i));
v8.writeHeapSnapshot(first);
globalThis.gone = null;
globalThis.grown = Array.from({ length: 5000 }, (_, i) => new Grow(i));
v8.writeHeapSnapshot(second);
