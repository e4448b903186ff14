import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {
    ignores: [
      'node_modules',
      'dist',
      'data',
      '.scratch',
      'test-results',
      '.bench-build',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  {
    // Written by `npm run lexgen`; the builder types some generics as any.
    files: ['src/generated/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
)
