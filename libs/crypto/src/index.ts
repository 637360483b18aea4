export * from './tokens';
export * from './field-codec';
export * from './bearer-token';
export * from './aead';
