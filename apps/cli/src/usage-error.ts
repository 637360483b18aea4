/** A command line that does not make sense: exit 64 with the command's help. */
export class UsageError extends Error {}
