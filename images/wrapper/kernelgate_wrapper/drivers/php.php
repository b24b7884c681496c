<?php
// PHP driver of the wrapper kernel (protocol: kernelgate_wrapper/sessions.py).
// Cells are evaluated in the global scope, so variables, functions and classes persist.
// The driver's own globals start with $__kernelgate_.  A leading "<?php" is dropped.
// Fatal errors (e.g. redeclaring a function) end the interpreter: the kernel restarts it.

final class KernelgateInterrupt extends Error {}

$__kernelgate_running = false;
pcntl_async_signals(true);
pcntl_signal(SIGINT, function () {
    if ($GLOBALS['__kernelgate_running']) {
        throw new KernelgateInterrupt('interrupted');
    }
});
// Warnings and notices go to stderr naming the cell (In[n]:line) rather than the driver's eval.
set_error_handler(function (int $level, string $message, string $file, int $line): bool {
    if (!(error_reporting() & $level)) {
        return false; // silenced with @
    }
    $kinds = [E_WARNING => 'Warning', E_NOTICE => 'Notice', E_DEPRECATED => 'Deprecated',
              E_USER_WARNING => 'Warning', E_USER_NOTICE => 'Notice', E_USER_DEPRECATED => 'Deprecated',
              E_USER_ERROR => 'Error'];
    $where = str_contains($file, "eval()'d code") ? $GLOBALS['__kernelgate_request']['label'] : $file;
    fwrite(STDERR, ($kinds[$level] ?? 'Error') . ": $message in $where:$line\n");
    return true;
});
$__kernelgate_commands = fopen('php://fd/' . getenv('KERNELGATE_COMMAND_FD'), 'r');
$__kernelgate_events = fopen('php://fd/' . getenv('KERNELGATE_EVENT_FD'), 'w');
putenv('KERNELGATE_COMMAND_FD');
putenv('KERNELGATE_EVENT_FD');

while (($__kernelgate_line = fgets($__kernelgate_commands)) !== false) {
    $__kernelgate_request = json_decode($__kernelgate_line, true);
    $__kernelgate_code = preg_replace('/^\s*<\?php\b/', '', $__kernelgate_request['code']);
    try {
        $__kernelgate_running = true;
        eval($__kernelgate_code);
        $__kernelgate_running = false;
        $__kernelgate_reply = ['status' => 'ok', 'data' => null];
    } catch (Throwable $__kernelgate_e) {
        $__kernelgate_running = false;
        $__kernelgate_where = str_contains($__kernelgate_e->getFile(), "eval()'d code")
            ? $__kernelgate_request['label'] : $__kernelgate_e->getFile();
        $__kernelgate_reply = [
            'status' => 'error',
            'ename' => get_class($__kernelgate_e),
            'evalue' => $__kernelgate_e->getMessage(),
            'traceback' => [get_class($__kernelgate_e) . ': ' . $__kernelgate_e->getMessage()
                . ' in ' . $__kernelgate_where . ':' . $__kernelgate_e->getLine()],
        ];
    }
    fwrite($__kernelgate_events, json_encode($__kernelgate_reply, JSON_INVALID_UTF8_SUBSTITUTE) . "\n");
    fflush($__kernelgate_events);
}
