// Regenerates config.example.toml from the config schema (a test fails when the two differ).
import { writeFileSync } from 'node:fs';
import { renderExampleConfig } from '@clauderon/config';

writeFileSync(new URL('../config.example.toml', import.meta.url), renderExampleConfig());
