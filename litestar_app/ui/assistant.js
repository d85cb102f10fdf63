// The assistant panel: chat through POST /assistant/chat; each suggested action becomes a button that runs
// only after the person confirms it in a dialog.

import { api, element, guarded, notify } from './api.js';
import { refreshServer, server } from './state.js';

const $ = (id) => document.getElementById(id);

// What each action type the server passes on does, through the same API as the rest of the UI.
const ACTIONS = {
  load_model: (parameters) => api('/models/load', { method: 'POST', body: parameters }),
  unload_model: () => api('/models/unload', { method: 'POST' }),
  generate: async (parameters) => {
    const accepted = await api('/txt2img', { method: 'POST', body: parameters });
    location.hash = '#queue';
    return accepted;
  },
  set_preview_settings: (parameters) => api('/preview/settings', { method: 'PUT', body: parameters }),
  load_upscaler: (parameters) => api('/upscaler/load', { method: 'POST', body: parameters }),
  navigate: async (parameters) => { location.hash = `#${parameters.view ?? parameters.page ?? 'generate'}`; },
};

function confirmAction(action) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = `Run "${action.type}"?`;
  $('confirm-text').textContent = JSON.stringify(action.parameters, null, 2);
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true }));
}

function say(role, text, actions = []) {
  const item = element('li', { class: `chat-${role}` }, element('span', { class: 'visually-hidden', text: role === 'user' ? 'You: ' : 'Assistant: ' }),
    element('p', { text }));
  if (actions.length) {
    item.append(element('div', { class: 'row' }, ...actions.map((action) => element('button', {
      type: 'button', text: `${action.type.replace(/_/g, ' ')}…`, 'aria-label': `Run the suggested action ${action.type}`,
      onclick: guarded(async () => {
        const run = ACTIONS[action.type];
        if (!run) throw new Error(`The UI does not know the action "${action.type}".`);
        if (!(await confirmAction(action))) return;
        await run(action.parameters || {});
        notify(`Done: ${action.type}`, 'notice');
        await refreshServer();
      }),
    }))));
  }
  $('chat-log').append(item);
  item.scrollIntoView({ block: 'end' });
  return item;
}

export function init() {
  $('chat-form').addEventListener('submit', guarded(async (event) => {
    event.preventDefault();
    const message = $('chat-message').value;
    const mine = say('user', message);
    $('chat-message').value = '';
    const context = { current_view: location.hash.slice(1) || 'generate', model_info: server.health, architecture: server.architectures?.current_architecture };
    let answer;
    try {
      answer = await api('/assistant/chat', { method: 'POST', body: { message, context } });
    } catch (error) {
      // The message stays, marked as not answered, with the reason and a way to send it again.
      mine.classList.add('chat-failed');
      mine.append(element('p', { class: 'chat-failure', text: `Not answered: ${error.message}` }),
        element('button', { type: 'button', text: 'Send again', onclick: () => {
          mine.remove();
          $('chat-message').value = message;
          $('chat-form').requestSubmit();
        } }));
      return;
    }
    say('assistant', answer.message, answer.actions);
  }));
  $('chat-clear').addEventListener('click', guarded(async () => {
    await api('/assistant/history', { method: 'DELETE' });
    $('chat-log').replaceChildren();
  }));
}

export async function show() {
  const status = await api('/assistant/status');
  $('assistant-state').textContent = status.enabled
    ? (status.connected ? `Talking to ${status.model} at ${status.base_url}.` : `Enabled, but ${status.base_url} does not answer: see Settings.`)
    : 'The assistant is disabled: enable it in Settings.';
  if (!$('chat-log').children.length) {
    const history = await api('/assistant/history');
    for (const turn of history.messages) say(turn.role, turn.content);
  }
}
