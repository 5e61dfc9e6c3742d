// The benchmarks' clustered HTTP hello-world on Node's cluster module: the
// Node side of bench/src/bin/hello.rs, with the same response, arguments,
// readiness line and count reporting.
//
//   node cluster_hello.js [ADDR] [--workers N]
//
// - ADDR: HOST:PORT to listen on (default 127.0.0.1:0: a free port that every
//   worker shares).
// - --workers N (or HERD_WORKERS=N): how many workers (default: one per CPU).
//   The policy is Node's own NODE_CLUSTER_SCHED_POLICY=rr|none.
//
// Once every worker listens, the primary prints
//   ready port=PORT workers=N policy=POLICY pid=PID
// Each worker counts the connections it accepted. On SIGUSR2, or a line
// `counts` on standard input, the primary asks every worker and prints
//   {"counts":{"1":5012,"2":4988}}
// A line `reset` sets every count back to zero.
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

function parseArgs() {
  let addr = null;
  let workers = process.env.HERD_WORKERS;
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--workers') workers = args[++i];
    else if (args[i].startsWith('-')) usage(`unknown option ${args[i]}`);
    else if (addr === null) addr = args[i];
    else usage(`unexpected argument ${args[i]}`);
  }
  addr = addr || '127.0.0.1:0';
  const cut = addr.lastIndexOf(':');
  const host = addr.slice(0, cut).replace(/^\[|\]$/g, '') || '::';
  const port = Number(addr.slice(cut + 1));
  const n = workers === undefined ? os.availableParallelism() : Number(workers);
  if (!Number.isInteger(n) || n < 1) usage(`worker count ${workers} is not a positive number`);
  if (!Number.isInteger(port)) usage(`bad address ${addr}`);
  return { host, port, workers: n };
}

function usage(why) {
  console.error(`cluster_hello: ${why}\nusage: node cluster_hello.js [ADDR] [--workers N]`);
  process.exit(2);
}

const COUNT_TIMEOUT_MS = 5000;

function primary({ workers }) {
  const policy = cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none';
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();

  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    if (++listening === workers) {
      console.log(`ready port=${address.port} workers=${workers} policy=${policy} pid=${process.pid}`);
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    console.error(`cluster_hello: worker ${worker.id} died (${signal || `exit code ${code}`}); stopping`);
    stop(1);
  });

  let nextReq = 0;
  let asking = null; // { req, answers, timer }
  const live = () => Object.values(cluster.workers).filter((w) => w.isConnected());
  const printCounts = (answers) => {
    const counts = {};
    for (const id of Object.keys(answers).sort((a, b) => a - b)) counts[id] = answers[id];
    console.log(JSON.stringify({ counts }));
  };
  cluster.on('message', (worker, msg) => {
    if (!asking || !msg || msg.req !== asking.req) return;
    asking.answers[worker.id] = msg.conns;
    if (Object.keys(asking.answers).length === live().length) {
      clearTimeout(asking.timer);
      printCounts(asking.answers);
      asking = null;
    }
  });
  const command = (cmd) => {
    if (cmd === 'counts') {
      if (asking) clearTimeout(asking.timer);
      const req = ++nextReq;
      asking = {
        req,
        answers: {},
        timer: setTimeout(() => {
          console.error(`cluster_hello: only ${Object.keys(asking.answers).length} of ${live().length} workers answered`);
          printCounts(asking.answers);
          asking = null;
        }, COUNT_TIMEOUT_MS),
      };
      for (const w of live()) w.send({ cmd: 'counts', req });
    } else if (cmd === 'reset') {
      for (const w of live()) w.send({ cmd: 'reset' });
    } else if (cmd !== '') {
      console.error(`cluster_hello: unknown command ${JSON.stringify(cmd)} (use counts or reset)`);
    }
  };
  process.on('SIGUSR2', () => command('counts'));
  let pendingInput = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    pendingInput += chunk;
    let nl;
    while ((nl = pendingInput.indexOf('\n')) >= 0) {
      command(pendingInput.slice(0, nl).trim());
      pendingInput = pendingInput.slice(nl + 1);
    }
  });
  process.stdin.on('error', () => {});

  const stop = (code) => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(code);
  };
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
}

function worker({ host, port }) {
  let conns = 0;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 11 });
    res.end('hello world');
  });
  server.on('connection', () => {
    conns++;
  });
  process.on('message', (msg) => {
    if (msg && msg.cmd === 'counts') process.send({ req: msg.req, conns });
    else if (msg && msg.cmd === 'reset') conns = 0;
  });
  server.listen(port, host);
}

const args = parseArgs();
if (cluster.isPrimary) primary(args);
else worker(args);
