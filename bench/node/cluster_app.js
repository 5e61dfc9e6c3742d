// Node's own cluster module running bench/node/hello_app.js in WORKERS
// workers (default 2); the policy is NODE_CLUSTER_SCHED_POLICY=rr|none.
'use strict';
const cluster = require('node:cluster');
if (cluster.isPrimary) {
  const n = Number(process.env.WORKERS || 2);
  for (let i = 0; i < n; i++) cluster.fork();
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  require('./hello_app.js');
}
