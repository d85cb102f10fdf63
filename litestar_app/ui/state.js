// What the views share about the server: health (loaded model, upscaler), the architecture presets, and what the
// server declares once: the binary's generation options (GET /options), the model types and load components
// (GET /models/types) and the contract's request defaults (GET /defaults), so that no view keeps a copy of them.
// Refreshed on start and on model / upscaler events; views listen for 'server-state'.

import { api } from './api.js';

export const server = { health: null, architectures: null, options: null, types: null, defaults: null };
let declared = null;  // the pending or finished fetch of what the server declares once

/** Options, model types and components, and request defaults: fetched once (again after a failure). */
export function serverFacts() {
  declared ??= Promise.all([api('/options'), api('/models/types'), api('/defaults')]).then(([options, types, defaults]) => {
    Object.assign(server, { options, types, defaults });
    return server;
  }, (error) => {
    declared = null;
    throw error;
  });
  return declared;
}

export async function refreshServer() {
  const [health, architectures] = await Promise.all([api('/health'), api('/architectures'), serverFacts()]);
  server.health = health;
  server.architectures = architectures;
  document.dispatchEvent(new CustomEvent('server-state'));
}

/** The loaded model's preset (generation defaults, size multiple), or null. */
export const currentPreset = () => server.architectures?.current_preset ?? null;

/** The model type named `name` (its folder, whether it is a main model), from GET /models/types. */
export const modelType = (name) => server.types?.model_types.find((type) => type.name === name);

/** Every model file of the server, flattened from GET /models's per-type lists. */
export async function modelFiles(query = '') {
  const listing = await api(`/models${query}`);
  return Object.values(listing).filter(Array.isArray).flat();
}
