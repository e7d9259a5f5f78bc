/** Jest runs the TypeScript sources as native ES modules through ts-jest (see README, "Tests"). */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // The fault-injection suite has its own script (npm run test:faults): it starts and breaks its own
  // Redis and FerretDB processes, and takes a couple of minutes.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/faults/'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }],
  },
  globalSetup: '<rootDir>/test/global-setup.js',
  testTimeout: 30000,
  maxWorkers: 2,
  verbose: true,
};
