/** A command line that does not make sense: exit 64 with the command's help. */
export class UsageError extends Error {}

/** A command that refused to act, for a reason the operator can fix: one line on stderr, exit 1. */
export class CommandRefused extends Error {}
