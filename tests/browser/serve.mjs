// Starts a ucregd loaded with the test packs and keeps it running until Ctrl-C, for
// working on the website by hand: node tests/browser/serve.mjs
import { Registry, packSpecs } from './registry.mjs';

const registry = await new Registry().start();
for (const spec of packSpecs)
	await registry.publish(spec);
console.log(`registry with ${packSpecs.length} packs at ${registry.origin}/`);
console.log(`admin token: ${registry.token}`);

process.on('SIGINT', async () => {
	await registry.stop();
	process.exit(0);
});
