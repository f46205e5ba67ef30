// A typed use of switchboard.js, for `tsc --noEmit`: the .d.ts must describe what the
// module exports, and what an app writes against it must type-check.
import Switchboard, { SwitchboardError, type Publication, type Subscription } from '../switchboard.js';

const client = new Switchboard('wss://example.com/ws', {
  name: 'ann',
  getToken: async () => 'a.b.c',
  timeout: 5_000,
  maxQueue: 10,
});
const states: Array<'disconnected' | 'connecting' | 'connected' | 'closed'> = [client.state];
client.on('connected', ({ client: me, heartbeat, reconnected }) => {
  const user: string = me.user;
  const seconds: number = heartbeat;
  const again: boolean = reconnected;
  void [user, seconds, again];
});
const off = client.on('disconnected', ({ code, reason, willRetry, retryIn }) => {
  void [code.toFixed(), reason.trim(), willRetry, retryIn ?? 0];
});
off();
client.on('error', (e: SwitchboardError) => console.warn(e.code, e.message, e.serverCode));

const lobby: Subscription = client.subscribe('lobby', {
  message: (m: Publication) => console.log(m.offset, m.data, m.from.user, m.recovered === true),
  gap: ({ code, epochChanged, previous, position }) => console.log(code, epochChanged, previous.offset, position.epoch),
  recovered: ({ count }) => console.log(count + 1),
  join: (c) => console.log(c.conn),
});
async function use(): Promise<number> {
  const offset: number = await lobby.publish({ text: 'hi' });
  const { epoch, publications } = await lobby.history({ limit: 10 });
  const who = await lobby.presence();
  console.log(epoch, publications.length, who.map((c) => c.user), lobby.position?.offset, lobby.stats.duplicates);
  lobby.unsubscribe();
  client.close();
  return offset + (await client.publish('other', [1, 2]));
}
void use;
void states;
