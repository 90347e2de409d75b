using System;
using System.Diagnostics;
using System.IO;
using System.Net.Http;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Server.Tests;

/// <summary>SIGTERM to a real server process in the middle of a stream.</summary>
public sealed partial class ShutdownTests(ITestOutputHelper output)
{
    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    private const int SIGTERM = 15;

    [Theory]
    [InlineData(10)] // the stream has time to finish
    [InlineData(0)]  // no grace: the stream is cancelled
    public async Task Sigterm_lets_the_stream_finish_or_cancels_it_and_exits_0(int graceSeconds)
    {
        string server = Path.Combine(AppContext.BaseDirectory, "Server.dll");
        var start = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { server, "--port", "0", "--model", TestPaths.Stories260KHf, "--shutdown-timeout", graceSeconds.ToString() },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        using Process process = Process.Start(start)!;
        try
        {
            var stderr = process.StandardError.ReadToEndAsync();
            Uri address = await ListeningAddressAsync(process.StandardOutput);
            var stdout = process.StandardOutput.ReadToEndAsync();
            using var http = new HttpClient { BaseAddress = address };
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            {
                Content = OpenAIClientTests.Json("""{"messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":400,"temperature":1,"stream":true}"""),
            };
            using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(200, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());

            var clock = Stopwatch.StartNew();
            Assert.Equal(0, kill(process.Id, SIGTERM));

            // The rest of the stream: to [DONE], or cut off when the grace period is over.
            bool done = false;
            try
            {
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (line == "data: [DONE]")
                        done = true;
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
            }
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(graceSeconds + 10));
            await process.WaitForExitAsync(timeout.Token);
            output.WriteLine($"grace {graceSeconds} s: stream {(done ? "finished" : "cancelled")}, exited {process.ExitCode} after {clock.ElapsedMilliseconds} ms");
            output.WriteLine(await stdout);
            output.WriteLine(await stderr);
            Assert.Equal(0, process.ExitCode);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(graceSeconds + 5));
            if (graceSeconds >= 10)
                Assert.True(done, "with a 10 s grace period the stream should finish");
        }
        finally
        {
            if (!process.HasExited)
                process.Kill();
        }
    }

    private static async Task<Uri> ListeningAddressAsync(StreamReader stdout)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (await stdout.ReadLineAsync(timeout.Token) is { } line)
        {
            Match match = Listening().Match(line);
            if (match.Success)
                return new Uri(match.Groups[1].Value + "/");
        }
        throw new InvalidOperationException("The server exited before listening.");
    }

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex Listening();
}
