import { defineConfig } from 'vite';

// Relative asset URLs: the gateway serves the page at {base_url}editor/ for any base_url.
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
    sourcemap: false
  }
});
