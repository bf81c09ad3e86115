// Enqueue one task by name from Node.js with celery-node and print its JSON result.
// Usage: node send_task.js BROKER_URL BACKEND_URL TASK_NAME KWARGS_JSON
const celery = require("celery-node");

const [broker, backend, name, kwargsJson] = process.argv.slice(2);
const client = celery.createClient(broker, backend);
const result = client.createTask(name).applyAsync([], JSON.parse(kwargsJson));

result
  .get(30000)
  .then((data) => {
    console.log(JSON.stringify({ status: "ok", result: data }));
  })
  .catch((err) => {
    console.log(JSON.stringify({ status: "error", error: String(err && err.message) }));
    process.exitCode = 1;
  })
  .finally(() => client.disconnect());
