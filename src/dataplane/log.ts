// The data plane never writes to the console: the embedding process decides
// where lines go (stdout JSON, the admin API, a test's array).

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogFn = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export const silentLog: LogFn = () => {};
