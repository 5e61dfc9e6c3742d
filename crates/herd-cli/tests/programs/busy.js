// A Node.js worker for `herd ctl profile` and `herd ctl dump`: it serves
// the socket herd passes at descriptor 3 (`busy` on every path) and,
// between requests, spins in one known function, so a CPU profile of it
// names that function. Run it with `node --perf-basic-prof` for perf to
// see JavaScript function names (Node writes /tmp/perf-PID.map).
'use strict';
const http = require('node:http');

// Spins for 20 ms, then lets the event loop serve: the spinning is this
// function's own frame (whatever the JIT inlines into it).
let sink = 0;
function herd_busy_marker_js() {
  const until = Date.now() + 20;
  let x = sink;
  while (Date.now() < until) {
    for (let i = 0; i < 10000; i++) {
      x = (x * 31 + i) % 1000003;
    }
  }
  sink = x;
}

function spin() {
  herd_busy_marker_js();
  setImmediate(spin);
}

const server = http.createServer((req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end(`busy ${process.pid} ${sink}\n`);
});
server.listen({ fd: 3 }, () => {
  console.log(`worker ${process.env.HERD_WORKER_ID} (pid ${process.pid}) busy on fd 3`);
  spin();
});
process.on('SIGTERM', () => process.exit(0));
