// What the test pages share: the signed-in user (the `user` cookie, as a Laravel session would
// carry it), the ws port of `serve` (?port=), and a display of what the page received, kept in
// `entries` for the test to read back: connection states, every channel event, each presence
// channel's members.
export const user = document.cookie.match(/(?:^|; )user=([^;]*)/)?.[1] ?? 'nobody';
export const port = Number(new URLSearchParams(location.search).get('port'));

/** Everything shown, in order: {kind: 'state' | 'event' | 'members', channel?, event?, data?}. */
export const entries = [];

/** The entries that have the fields of `wanted`, each equal as JSON. */
export const matching = (wanted) =>
  entries.filter((e) => Object.entries(wanted).every(([k, v]) => JSON.stringify(e[k]) === JSON.stringify(v)));

const members = new Map();

document.getElementById('who').textContent = user;

/** Adds `entry` to `entries` and to the page's list. */
export function record(entry) {
  entries.push(entry);
  const item = document.createElement('li');
  item.className = entry.kind;
  const data = entry.data === undefined ? '' : ` ${JSON.stringify(entry.data)}`;
  const what = entry.kind === 'event' ? entry.event : entry.kind;
  item.textContent = `${entry.channel ? `${entry.channel}: ` : ''}${what}${data}`;
  document.getElementById('log').append(item);
}

/** Shows the connection's state and socket id. */
export function showState(state, socketId) {
  record({ kind: 'state', data: state });
  document.getElementById('state').textContent = state;
  document.getElementById('state').dataset.state = state;
  document.getElementById('socket').textContent = socketId ?? '';
}

/** Shows (and records) the members of presence channel `channel`, as sorted ids. */
export function showMembers(channel, ids) {
  const sorted = [...ids].sort();
  members.set(channel, sorted);
  record({ kind: 'members', channel, data: sorted });
  const list = document.getElementById('members');
  list.replaceChildren(
    ...[...members].map(([name, people]) => {
      const row = document.createElement('li');
      row.textContent = `${name}: ${people.join(', ') || '(none)'}`;
      return row;
    }),
  );
}
