using System;
using System.IO;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;

namespace Llama.Compiled.Server;

/// <summary>
/// An OpenAI-compatible server for a compiled model:
/// <c>dotnet run --project samples/Server -c Release -- --model PATH --port 8080</c>.
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        WebApplication app;
        try
        {
            ServerOptions? options = ServerOptions.Parse(args);
            if (options is null)
            {
                Console.WriteLine(ServerOptions.Usage);
                return 0;
            }
            app = ServerApp.Build(options);
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException or ModelFormatException or NotSupportedException)
        {
            // Expected failures (bad arguments, missing or broken model files) get one line, not a stack trace.
            Console.Error.WriteLine("error: " + Describe(e));
            return 2;
        }
        await using (app)
        {
            try
            {
                // Runs until SIGTERM or Ctrl+C; in-flight requests then get --shutdown-timeout to finish.
                await app.RunAsync();
            }
            catch (IOException e)
            {
                // Kestrel could not bind (the port is taken, the address is not this machine's).
                Console.Error.WriteLine("error: " + Describe(e) + (e.InnerException is { } inner ? " (" + inner.Message + ")" : ""));
                return 2;
            }
        }
        return 0;
    }

    private static string Describe(Exception e)
    {
        string message = e.Message.Split('\n')[0].TrimEnd();
        return e is ArgumentException { ParamName: string name } ? message.Replace($" (Parameter '{name}')", "") : message;
    }
}
