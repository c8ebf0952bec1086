/**
 * Type checking is `npm run typecheck`'s job; jest only transpiles, which keeps the suite fast.
 * hyparquet-writer (and the hyparquet it pins) ship ES modules only, which jest's CommonJS runtime
 * cannot require: they are transpiled to CommonJS like the tests.
 */
const ES_MODULE_PACKAGES = ['hyparquet', 'hyparquet-writer'];

module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { diagnostics: false }],
    [`/node_modules/(${ES_MODULE_PACKAGES.join('|')})/.+\\.js$`]: ['ts-jest', { diagnostics: false, tsconfig: { allowJs: true } }],
  },
  transformIgnorePatterns: [`/node_modules/(?!(${ES_MODULE_PACKAGES.join('|')})/)`],
  testTimeout: 120000,
};
