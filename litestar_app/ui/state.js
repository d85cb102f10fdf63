// What the views share about the server: health (loaded model, upscaler), the architecture presets and the
// generation options. Refreshed on start and on model / upscaler events; views listen for 'server-state'.

import { api } from './api.js';

export const server = { health: null, architectures: null, options: null };

export async function refreshServer() {
  const [health, architectures] = await Promise.all([api('/health'), api('/architectures')]);
  server.health = health;
  server.architectures = architectures;
  if (!server.options) server.options = await api('/options');
  document.dispatchEvent(new CustomEvent('server-state'));
}

/** The loaded model's preset (generation defaults, size multiple), or null. */
export const currentPreset = () => server.architectures?.current_preset ?? null;

/** Every model file of the server, flattened from GET /models's per-type lists. */
export async function modelFiles(query = '') {
  const listing = await api(`/models${query}`);
  return Object.values(listing).filter(Array.isArray).flat();
}
