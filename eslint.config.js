import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The lane's files import one another by './x.js'; from anywhere else only its public surface.
const LANE_ONLY_BY_INDEX = {
  group: ['**/lane/*', '!**/lane/index.js'],
  message: 'Import the fast lane through src/http/lane/index.ts, its public surface.',
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'native/build/**', 'storage/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'sharp', message: 'Only src/native/sharp.ts imports sharp.' },
            { name: 'mmap-io', message: 'Only src/native/mmap.ts imports mmap-io.' },
          ],
          patterns: [LANE_ONLY_BY_INDEX],
        },
      ],
    },
  },
  {
    files: ['src/native/sharp.ts', 'test/**', 'bench/**'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [LANE_ONLY_BY_INDEX] }] },
  },
  {
    files: ['src/native/mmap.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    // The wrappers of foreign libraries are boundaries: callers convert to and from their plain
    // terms, so they import nothing of pixtable beyond the error registry and vocabulary types.
    files: ['src/native/sharp.ts', 'src/native/mmap.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../*', '!../errors.js', '!../formats.js'],
              message: 'A foreign boundary imports only src/errors.ts and types of src/formats.ts.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/web/**/*.js'],
    languageOptions: {
      globals: {
        window: 'readonly',
        document: 'readonly',
        fetch: 'readonly',
        performance: 'readonly',
        ImageData: 'readonly',
        URLSearchParams: 'readonly',
        location: 'readonly',
        IntersectionObserver: 'readonly',
        atob: 'readonly',
      },
    },
  },
);
