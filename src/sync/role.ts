/**
 * The role of an open database, as one state machine. Transitions are a pure function (table-tested in
 * test/unit/role.test.ts); `SyncController` holds the current role and is the only one to change it.
 *
 *   writer ──lease lost / fenced──▶ stopped
 *   writer, replica ──restored file failed quick_check──▶ stopped
 *   replica ──lease taken──▶ promoting ──caught up──▶ writer
 *                            promoting ──failed──▶ replica
 *   any open role ──close()──▶ closing ──▶ closed
 */
export type RoleState = 'writer' | 'replica' | 'promoting' | 'stopped' | 'closing' | 'closed';

export type RoleEvent = 'lease-taken' | 'caught-up' | 'promotion-failed' | 'lease-lost' | 'check-failed' | 'close' | 'closed';

const TRANSITIONS: Record<RoleState, Partial<Record<RoleEvent, RoleState>>> = {
  writer: { 'lease-lost': 'stopped', 'check-failed': 'stopped', close: 'closing' },
  replica: { 'lease-taken': 'promoting', 'check-failed': 'stopped', close: 'closing' },
  promoting: { 'caught-up': 'writer', 'promotion-failed': 'replica', 'lease-lost': 'replica', close: 'closing' },
  stopped: { close: 'closing' },
  closing: { closed: 'closed' },
  closed: {},
};

/** The next role, or null when the event does not apply in this role (it is then ignored). */
export function nextRole(current: RoleState, event: RoleEvent): RoleState | null {
  return TRANSITIONS[current][event] ?? null;
}
