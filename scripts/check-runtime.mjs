// Fails fast when the project's own Node (from the `node` npm package) is not the one running.
// npm scripts put node_modules/.bin first on PATH, so `node` here must be >= 22.19.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(
    `clauderon needs Node >= 22.19 but is running on ${process.version} (${process.execPath}).\n` +
      'Run it through npm (npm test, npm run clauderon -- …) so the project-local Node from node_modules/.bin is used,\n' +
      'or run `npm ci` if node_modules/.bin/node is missing.',
  );
  process.exit(1);
}
