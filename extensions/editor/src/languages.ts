/**
 * Syntax highlighting and a first program for each kernelspec language (the `language`
 * field of a kernelspec: python, bash, c++, ...), loaded on first use. Unknown languages
 * get plain text.
 */
import { StreamLanguage } from '@codemirror/language';
import type { Extension } from '@codemirror/state';

// Each language's package is its own chunk, loaded when a page first shows that language.
const legacy = async (load: () => Promise<unknown>): Promise<Extension> =>
  StreamLanguage.define((await load()) as Parameters<typeof StreamLanguage.define>[0]);

const HIGHLIGHTING: Record<string, () => Promise<Extension>> = {
  python: async () => (await import('@codemirror/lang-python')).python(),
  bash: () => legacy(async () => (await import('@codemirror/legacy-modes/mode/shell')).shell),
  c: async () => (await import('@codemirror/lang-cpp')).cpp(),
  'c++': async () => (await import('@codemirror/lang-cpp')).cpp(),
  go: async () => (await import('@codemirror/lang-go')).go(),
  java: async () => (await import('@codemirror/lang-java')).java(),
  javascript: async () => (await import('@codemirror/lang-javascript')).javascript(),
  typescript: async () => (await import('@codemirror/lang-javascript')).javascript({ typescript: true }),
  kotlin: () => legacy(async () => (await import('@codemirror/legacy-modes/mode/clike')).kotlin),
  lua: () => legacy(async () => (await import('@codemirror/legacy-modes/mode/lua')).lua),
  perl: () => legacy(async () => (await import('@codemirror/legacy-modes/mode/perl')).perl),
  php: async () => (await import('@codemirror/lang-php')).php({ plain: true }),
  r: () => legacy(async () => (await import('@codemirror/legacy-modes/mode/r')).r),
  ruby: () => legacy(async () => (await import('@codemirror/legacy-modes/mode/ruby')).ruby),
  rust: async () => (await import('@codemirror/lang-rust')).rust(),
  sql: async () => {
    const { sql, SQLite } = await import('@codemirror/lang-sql');
    return sql({ dialect: SQLite });
  }
};

const FIRST_PROGRAM: Record<string, string> = {
  python: 'print("Hello from Python", 6 * 7)\n',
  bash: 'echo "Hello from $(basename "$SHELL") in $(pwd)"\n',
  c: '#include <stdio.h>\n\nint main(void) {\n    printf("Hello from C %d\\n", 6 * 7);\n    return 0;\n}\n',
  'c++': '#include <iostream>\n\nint main() {\n    std::cout << "Hello from C++ " << 6 * 7 << std::endl;\n}\n',
  go: 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello from Go", 6*7)\n}\n',
  java: 'System.out.println("Hello from Java " + 6 * 7);\n',
  javascript: 'console.log("Hello from JavaScript", 6 * 7);\n',
  typescript: 'const answer: number = 6 * 7;\nconsole.log("Hello from TypeScript", answer);\n',
  kotlin: 'println("Hello from Kotlin ${6 * 7}")\n',
  lua: 'print("Hello from Lua", 6 * 7)\n',
  perl: 'print "Hello from Perl ", 6 * 7, "\\n";\n',
  php: 'echo "Hello from PHP " . 6 * 7 . "\\n";\n',
  r: 'cat("Hello from R", 6 * 7, "\\n")\n',
  ruby: 'puts "Hello from Ruby #{6 * 7}"\n',
  rust: 'println!("Hello from Rust {}", 6 * 7);\n',
  sql: "SELECT 'Hello from SQLite', 6 * 7;\n"
};

function key(language: string): string {
  return language.trim().toLowerCase();
}

/** The CodeMirror extension highlighting `language`; none for unknown languages. */
export async function highlighting(language: string): Promise<Extension> {
  const make = HIGHLIGHTING[key(language)];
  return make ? make() : [];
}

/** A short program that prints something in `language`. */
export function firstProgram(language: string): string {
  return FIRST_PROGRAM[key(language)] ?? '';
}

/** The language of a file name, for highlighting a file opened from the tree. */
export function languageOfFile(name: string): string | null {
  const extension = name.toLowerCase().split('.').pop() ?? '';
  const byExtension: Record<string, string> = {
    py: 'python', sh: 'bash', bash: 'bash', c: 'c', h: 'c', cc: 'c++', cpp: 'c++', hpp: 'c++',
    go: 'go', java: 'java', js: 'javascript', mjs: 'javascript', ts: 'typescript',
    kt: 'kotlin', lua: 'lua', pl: 'perl', php: 'php', r: 'r', rb: 'ruby', rs: 'rust', sql: 'sql'
  };
  return byExtension[extension] ?? null;
}
