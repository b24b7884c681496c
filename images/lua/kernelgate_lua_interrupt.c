/* kernelgate_lua_interrupt: makes SIGINT stop running Lua code, every time (images/lua).
 *
 * lua5.4's standalone interpreter catches SIGINT while it runs a script, but only once: its
 * handler puts SIGINT back to SIG_DFL, so a second interrupt would kill the interpreter and
 * its state.  The wrapper kernel's Lua driver (kernelgate_wrapper/drivers/lua.lua) loads this
 * module with package.loadlib and brackets every cell with catch() and ignore():
 *
 *   catch()   SIGINT sets a hook on the main Lua thread that raises the error "interrupted"
 *             at the next instruction; no SA_RESTART, so a read blocked on stdin returns
 *             EINTR and the hook fires right after it.  The main thread also gets a count
 *             hook (every CHECK_EVERY instructions) that raises the same error once SIGINT
 *             has arrived: coroutines created during the cell inherit it, so a loop inside
 *             a coroutine stops too.
 *   ignore()  SIGINT is ignored again (between cells), a hook not yet fired is removed;
 *             returns whether SIGINT arrived since catch().
 *
 * A coroutine created before the cell (or one whose hook the user replaced with
 * debug.sethook) has no such hook: a loop inside it is not stopped, and the kernel kills and
 * restarts the interpreter after its grace period.
 * Build: gcc -O2 -shared -fPIC -I/usr/include/lua5.4 -o kernelgate_lua_interrupt.so THIS_FILE
 */
#include <signal.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

static lua_State *main_thread;
static volatile sig_atomic_t interrupted;

#define CHECK_EVERY 1000

static void stop(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    lua_pushliteral(L, "interrupted");
    lua_error(L);
}

/* count hook: raise once SIGINT has arrived (also runs in coroutines created meanwhile) */
static void check(lua_State *L, lua_Debug *ar) {
    (void)ar;
    if (interrupted) {
        lua_pushliteral(L, "interrupted");
        lua_error(L);
    }
}

static void on_sigint(int signum) {
    (void)signum;
    interrupted = 1;
    /* lua_sethook may be called from a signal handler (lua.c does it too) */
    lua_sethook(main_thread, stop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

static int catch_sigint(lua_State *L) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0; /* no SA_RESTART: blocking reads end with EINTR */
    interrupted = 0;
    lua_sethook(main_thread, check, LUA_MASKCOUNT, CHECK_EVERY);
    if (sigaction(SIGINT, &action, NULL) != 0)
        return luaL_error(L, "sigaction(SIGINT) failed");
    return 0;
}

static int ignore_sigint(lua_State *L) {
    signal(SIGINT, SIG_IGN);
    lua_sethook(main_thread, NULL, 0, 0);
    lua_pushboolean(L, interrupted);
    interrupted = 0;
    return 1;
}

int luaopen_kernelgate_interrupt(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"catch", catch_sigint}, {"ignore", ignore_sigint}, {NULL, NULL}};
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    main_thread = lua_tothread(L, -1);
    lua_pop(L, 1);
    signal(SIGINT, SIG_IGN);
    luaL_newlib(L, functions);
    return 1;
}
