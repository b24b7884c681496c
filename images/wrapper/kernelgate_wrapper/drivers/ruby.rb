# Ruby driver of the wrapper kernel (protocol: kernelgate_wrapper/sessions.py).
# Cells are evaluated in TOPLEVEL_BINDING, so local variables, methods and classes persist.
# A cell's value other than nil is its result (text/plain: inspect).
require "json"

trap("INT", "DEFAULT") # Ruby's default: raise Interrupt (the kernel may pass SIGINT ignored)
$stdout.sync = true
$stderr.sync = true
commands = IO.new(Integer(ENV.delete("KERNELGATE_COMMAND_FD")), "r", close_on_exec: true)
events = IO.new(Integer(ENV.delete("KERNELGATE_EVENT_FD")), "w", close_on_exec: true)
events.sync = true
driver = File.expand_path(__FILE__)

loop do
  begin
    line = commands.gets
    break if line.nil?
    request = JSON.parse(line)
    begin
      value = eval(request["code"], TOPLEVEL_BINDING, request["label"], 1)
      reply = { status: "ok", data: value.nil? ? nil : { "text/plain" => value.inspect } }
    rescue Exception => e # SyntaxError, Interrupt and SystemExit end the cell, too
      trace = (e.backtrace || []).reject { |frame| frame.start_with?(driver) }
      reply = { status: "error", ename: e.class.name, evalue: e.message,
                traceback: ["#{e.class}: #{e.message}", *trace] }
    end
    events.write(JSON.generate(reply) + "\n")
  rescue Interrupt
    next # between cells: nothing to stop
  end
end
