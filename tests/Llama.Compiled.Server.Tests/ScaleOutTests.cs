using System;
using System.ClientModel;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenAI;
using OpenAI.Chat;
using Xunit;
using Xunit.Abstractions;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace Llama.Compiled.Server.Tests;

/// <summary>
/// Scale out with existing parts: two server processes behind a YARP reverse proxy (in this process), one of them killed
/// in the middle of a load. Its in-flight requests fail cleanly (502 from the proxy, or a stream cut off with an error),
/// nothing hangs, and once the health check has noticed, every request goes to the survivor and succeeds.
/// The same configuration is in docs/serving.md.
/// </summary>
public sealed partial class ScaleOutTests(ITestOutputHelper output)
{
    /// <summary>The header the proxy adds to each answer: the id of the destination that served it ("a" or "b").</summary>
    private const string UpstreamHeader = "x-upstream";

    private const int Workers = 6;
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    private const int SIGSTOP = 19; // Linux

    [Fact]
    public async Task Two_servers_behind_YARP_lose_one_mid_load_and_the_survivor_takes_over()
    {
        var clock = Stopwatch.StartNew();
        Task<ServerProcess> startA = ServerProcess.StartAsync();
        Task<ServerProcess> startB = ServerProcess.StartAsync();
        await using ServerProcess a = await startA;
        await using ServerProcess b = await startB;
        await using Proxy proxy = await Proxy.StartAsync(new() { ["a"] = a.Address, ["b"] = b.Address });
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: servers on {a.Address} and {b.Address}, proxy on {proxy.Address}");

        // The first active probes: both destinations healthy.
        await WaitUntilAsync(() => proxy.Health("a") == DestinationHealth.Healthy && proxy.Health("b") == DestinationHealth.Healthy,
            TimeSpan.FromSeconds(20), "both destinations healthy");

        using var http = new HttpClient { BaseAddress = proxy.Address, Timeout = TimeSpan.FromSeconds(60) };
        var outcomes = new ConcurrentQueue<Outcome>();
        using var stopLoad = new CancellationTokenSource();
        using var stopLoadOnFailure = new Finally(stopLoad.Cancel);
        Task[] workers = Enumerable.Range(0, Workers).Select(worker => Task.Run(async () =>
        {
            for (int i = 0; !stopLoad.IsCancellationRequested && i < 100_000; i++)
                outcomes.Enqueue(await SendAsync(http, clock, worker, i));
        })).ToArray();

        // 1. Both servers serve: answers carry both ids, and each server's own /metrics counts chat completions.
        await WaitUntilAsync(() => outcomes.Count(o => o.Succeeded && o.Upstream == "a") >= 5 && outcomes.Count(o => o.Succeeded && o.Upstream == "b") >= 5,
            TimeSpan.FromSeconds(30), "answers from both servers");
        long servedByA = await WaitForChatCountAsync(a, 1), servedByB = await WaitForChatCountAsync(b, 1);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: before the kill, /metrics counts {servedByA} chat completions on a, {servedByB} on b");

        // 2. Kill a. A model this small answers in milliseconds, so a crash at a random instant may find nothing inside the
        // process; freezing it first (as a hung process would be) makes sure requests are in flight on it when it dies.
        // Round-robin sends every other request to it, where it stays: soon every worker waits on the frozen server. A long
        // stream that a has begun is frozen too, mid-way, unless a finished it first (then that path is not tried this run).
        Task<Outcome> longStream = await LongStreamOnAsync(http, clock, "a");
        TimeSpan freezeAt = clock.Elapsed;
        Assert.Equal(0, kill(a.Process.Id, SIGSTOP));
        await Task.Delay(500); // what it had answered before freezing has arrived by now
        await WaitUntilAsync(() => proxy.InFlight("a") >= 2, TimeSpan.FromSeconds(10), "requests waiting on the frozen server");
        int inFlightAtKill = proxy.InFlight("a");
        a.Process.Kill();
        TimeSpan killAt = clock.Elapsed;
        await a.Process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));

        // 3. The health checks notice: a leaves the cluster's available destinations.
        await WaitUntilAsync(() => proxy.Available().SequenceEqual(["b"]), TimeSpan.FromSeconds(20), "the killed server out of the cluster");
        TimeSpan detectedAt = clock.Elapsed;
        output.WriteLine($"{killAt.TotalSeconds:F1} s: killed a ({(killAt - freezeAt).TotalMilliseconds:F0} ms after freezing it); "
            + $"{inFlightAtKill} requests in flight on it; {(detectedAt - killAt).TotalSeconds:F1} s later out of the cluster (active health {proxy.Health("a")}, passive {proxy.PassiveHealth("a")})");

        // Whichever check noticed first, the active one (GET /health every second) marks it unhealthy within seconds too.
        await WaitUntilAsync(() => proxy.Health("a") == DestinationHealth.Unhealthy, TimeSpan.FromSeconds(20), "the active health check to mark the killed server unhealthy");
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: the active health check marks a unhealthy ({(clock.Elapsed - killAt).TotalSeconds:F1} s after the kill)");

        // The load goes on a moment against the survivor alone, then stops; every request ends (none hangs).
        await Task.Delay(TimeSpan.FromSeconds(1));
        stopLoad.Cancel();
        await Task.WhenAll(workers).WaitAsync(RequestTimeout + TimeSpan.FromSeconds(30));
        TimeSpan loadEnd = clock.Elapsed;

        // 4. After the health check noticed: the official client, streaming and not, all answered by the survivor.
        long forwardedToAAfter = proxy.Forwarded("a"), forwardedToB = proxy.Forwarded("b");
        var client = new ChatClient("stories260K", new ApiKeyCredential("unused"), new OpenAIClientOptions
        {
            Endpoint = new Uri(proxy.Address, "v1"),
            RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(0), // a failure is the test's to see
            NetworkTimeout = RequestTimeout,
        });
        const int After = 12;
        string[] answers = await Task.WhenAll(Enumerable.Range(0, After).Select(async i =>
        {
            ChatMessage[] messages = [new UserChatMessage($"Tell me a story about {Subjects[i % Subjects.Length]}.")];
            var options = new ChatCompletionOptions { MaxOutputTokenCount = 16, Temperature = 1f, Seed = i };
            if (i % 2 == 0)
                return (await client.CompleteChatAsync(messages, options)).Value.Content[0].Text;
            string text = "";
            await foreach (StreamingChatCompletionUpdate update in client.CompleteChatStreamingAsync(messages, options))
                text += string.Concat(update.ContentUpdate.Select(part => part.Text));
            return text;
        }));
        Assert.All(answers, answer => Assert.False(string.IsNullOrWhiteSpace(answer)));
        Assert.Equal(forwardedToAAfter, proxy.Forwarded("a"));
        Assert.Equal(forwardedToB + After, proxy.Forwarded("b"));
        long servedByBAfter = await WaitForChatCountAsync(b, servedByB + After);

        // What the load saw.
        Outcome longStreamOutcome = await longStream.WaitAsync(RequestTimeout);
        output.WriteLine(longStreamOutcome.Succeeded
            ? "the long stream on a had finished before a was frozen"
            : $"the long stream on a, frozen mid-way: {longStreamOutcome.Error ?? "HTTP " + longStreamOutcome.Status} after {longStreamOutcome.Chunks} events");
        Outcome[] all = [.. outcomes, longStreamOutcome];
        Outcome[] failed = all.Where(o => !o.Succeeded).ToArray();
        output.WriteLine($"{loadEnd.TotalSeconds:F1} s: load stopped; {all.Length} requests, {all.Count(o => o.Succeeded)} answered "
            + $"({all.Count(o => o.Succeeded && o.Upstream == "a")} by a, {all.Count(o => o.Succeeded && o.Upstream == "b")} by b), {failed.Length} failed:");
        foreach (var group in failed.GroupBy(o => $"{(o.Stream ? "stream" : "plain ")} {o.Error ?? "HTTP " + o.Status} via {o.Upstream ?? "(no header)"}"))
            output.WriteLine($"  {group.Count(),4} × {group.Key}");
        output.WriteLine($"  the proxy's forwarding errors: {string.Join(", ", proxy.Errors.GroupBy(e => e).Select(g => $"{g.Count()} × {g.Key}"))}");
        output.WriteLine($"after: {After} requests through the official client, all answered by b (its /metrics: {servedByBAfter} chat completions); whole test {clock.Elapsed.TotalSeconds:F1} s");

        Assert.DoesNotContain(all, o => o.Hung);
        // Every failure is a clean one (the proxy's 502, or a stream cut off with an error the client sees), on the killed
        // server, no earlier than its death and no later than the health check's noticing it.
        Assert.All(failed, o =>
        {
            Assert.True(o.Status is 502 || o.Error is not null, $"not a clean failure: {o}");
            Assert.Equal("a", o.Upstream);
            Assert.True(o.End >= freezeAt, $"failed before a was frozen: {o}");
            Assert.True(o.Start <= detectedAt, $"failed after the health check noticed: {o}");
        });
        Assert.True(failed.Length >= 2, "the requests in flight on the killed server should fail");
        Assert.All(all.Where(o => o.Upstream == "b"), o => Assert.True(o.Succeeded, $"the survivor failed a request: {o}"));
        Assert.Contains(all, o => o.Start > detectedAt && o.Succeeded);
    }

    // ---------------------------------------------------------------- the load

    private static readonly string[] Subjects = ["a dog", "a cat", "a bird", "a fish", "a frog", "a bear", "a lion", "a mouse", "a tree", "a boat"];

    /// <summary>What one request of the load saw.</summary>
    private sealed record Outcome(int Worker, bool Stream, TimeSpan Start, TimeSpan End, string? Upstream, int? Status, bool Complete, string? Error, bool Hung)
    {
        /// <summary>The events a stream delivered ([DONE] included).</summary>
        public int Chunks { get; init; }

        public bool Succeeded => Status == 200 && Complete && Error is null;
    }

    /// <summary>One chat completion through the proxy, streamed or not; its outcome, never an exception.</summary>
    private static async Task<Outcome> SendAsync(HttpClient http, Stopwatch clock, int worker, int i)
    {
        bool stream = (worker + i) % 2 == 0;
        string body = $$"""{"model":"stories260K","messages":[{"role":"user","content":"Tell me a story about {{Subjects[(worker + i) % Subjects.Length]}}."}],"max_tokens":{{16 + i % 17}},"temperature":1,"stream":{{(stream ? "true" : "false")}}}""";
        TimeSpan start = clock.Elapsed;
        string? upstream = null;
        int? status = null;
        using var timeout = new CancellationTokenSource(RequestTimeout);
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = OpenAIClientTests.Json(body) };
            using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            status = (int)response.StatusCode;
            upstream = response.Headers.TryGetValues(UpstreamHeader, out IEnumerable<string>? values) ? values.First() : null;
            bool complete = false;
            if (status == 200 && stream)
            {
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(timeout.Token));
                while (await reader.ReadLineAsync(timeout.Token) is { } line)
                    complete |= line == "data: [DONE]";
            }
            else if (status == 200)
            {
                using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(timeout.Token));
                complete = json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").ValueKind == JsonValueKind.String;
            }
            else
            {
                await response.Content.ReadAsStringAsync(timeout.Token);
            }
            return new(worker, stream, start, clock.Elapsed, upstream, status, complete, null, false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            return new(worker, stream, start, clock.Elapsed, upstream, status, false, "timed out", true);
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            return new(worker, stream, start, clock.Elapsed, upstream, status, false, $"{e.GetType().Name}: {e.Message}", false);
        }
    }

    private sealed class Finally(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    /// <summary>
    /// Starts streaming a long story (seed 1 runs to max_tokens) until one is served by <paramref name="destination"/>,
    /// and returns once its first event has arrived; the task returned reads the rest.
    /// </summary>
    private static async Task<Task<Outcome>> LongStreamOnAsync(HttpClient http, Stopwatch clock, string destination)
    {
        const string Body = """{"model":"stories260K","messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":480,"temperature":1,"seed":1,"stream":true}""";
        for (int attempt = 0; attempt < 20; attempt++)
        {
            TimeSpan start = clock.Elapsed;
            var timeout = new CancellationTokenSource(RequestTimeout);
            var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = OpenAIClientTests.Json(Body) };
            HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync(timeout.Token));
            string? upstream = response.Headers.TryGetValues(UpstreamHeader, out IEnumerable<string>? values) ? values.First() : null;
            if (response.StatusCode == HttpStatusCode.OK && upstream == destination && await reader.ReadLineAsync(timeout.Token) is { } first && first.StartsWith("data: ", StringComparison.Ordinal))
                return ReadRestAsync(start, upstream, timeout, request, response, reader);
            await reader.ReadToEndAsync(timeout.Token);
            reader.Dispose();
            response.Dispose();
            request.Dispose();
            timeout.Dispose();
        }
        throw new InvalidOperationException($"20 long streams and none served by {destination}.");

        async Task<Outcome> ReadRestAsync(TimeSpan start, string upstream, CancellationTokenSource timeout, HttpRequestMessage request, HttpResponseMessage response, StreamReader reader)
        {
            int chunks = 1;
            bool done = false;
            try
            {
                while (await reader.ReadLineAsync(timeout.Token) is { } line)
                {
                    chunks += line.StartsWith("data: ", StringComparison.Ordinal) ? 1 : 0;
                    done |= line == "data: [DONE]";
                }
                return new(-1, true, start, clock.Elapsed, upstream, 200, done, null, false) { Chunks = chunks };
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                return new(-1, true, start, clock.Elapsed, upstream, 200, false, "timed out", true) { Chunks = chunks };
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                return new(-1, true, start, clock.Elapsed, upstream, 200, false, $"{e.GetType().Name}: {e.Message}", false) { Chunks = chunks };
            }
            finally
            {
                reader.Dispose();
                response.Dispose();
                request.Dispose();
                timeout.Dispose();
            }
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan limit, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit)
                throw new TimeoutException($"Waited {limit.TotalSeconds} s for {what}.");
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// Polls the server's /metrics until its count of answered chat completions (llama_compiled_server_requests_total,
    /// endpoint "chat", status 200) is at least <paramref name="atLeast"/> (the exporter caches a scrape briefly).
    /// </summary>
    private static async Task<long> WaitForChatCountAsync(ServerProcess server, long atLeast)
    {
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(10) };
        long count = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            string metrics = await http.GetStringAsync("metrics");
            Match match = ChatCount().Match(metrics);
            count = match.Success ? (long)double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
            if (count >= atLeast)
                return count;
            await Task.Delay(200);
        }
        throw new TimeoutException($"{server.Address}metrics counts {count} chat completions, expected at least {atLeast}.");
    }

    [GeneratedRegex(@"^llama_compiled_server_requests_total\{[^}]*endpoint=""chat""[^}]*http_response_status_code=""200""[^}]*\} (\S+)", RegexOptions.Multiline)]
    private static partial Regex ChatCount();

    // ---------------------------------------------------------------- the parts

    /// <summary>A real server process (the Server.dll built beside the tests) on a free loopback port.</summary>
    private sealed partial class ServerProcess : IAsyncDisposable
    {
        private ServerProcess(Process process, Uri address)
        {
            Process = process;
            Address = address;
        }

        public Process Process { get; }
        public Uri Address { get; }

        public static async Task<ServerProcess> StartAsync()
        {
            var start = new ProcessStartInfo("dotnet")
            {
                // One forward-pass thread each: two servers share two cores with the proxy and the load.
                ArgumentList = { Path.Combine(AppContext.BaseDirectory, "Server.dll"), "--port", "0", "--model", TestPaths.Stories260KHf,
                    "--threads", "1", "--max-sequences", "4", "--shutdown-timeout", "0" },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
            };
            Process process = Process.Start(start)!;
            try
            {
                _ = process.StandardError.ReadToEndAsync();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                while (await process.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
                {
                    Match match = Listening().Match(line);
                    if (match.Success)
                    {
                        _ = process.StandardOutput.ReadToEndAsync(); // keep the pipe drained
                        return new ServerProcess(process, new Uri(match.Groups[1].Value + "/"));
                    }
                }
                throw new InvalidOperationException("The server exited before listening.");
            }
            catch
            {
                process.Kill();
                process.Dispose();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!Process.HasExited)
            {
                Process.Kill();
                await Process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            Process.Dispose();
        }

        [GeneratedRegex(@"Now listening on: (http://\S+)")]
        private static partial Regex Listening();
    }

    /// <summary>
    /// YARP in this process on a free loopback port: one cluster of the given destinations, round-robin, active health
    /// checks on /health every second, passive health checks on transport failures. Adds <see cref="UpstreamHeader"/>
    /// to every answer and counts the requests forwarded to each destination.
    /// </summary>
    private sealed class Proxy : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly IProxyStateLookup _state;
        private readonly ConcurrentDictionary<string, long> _forwarded;
        private readonly ConcurrentDictionary<string, int> _inFlight;

        private Proxy(WebApplication app, Uri address, ConcurrentDictionary<string, long> forwarded, ConcurrentDictionary<string, int> inFlight, ConcurrentQueue<string> errors)
        {
            _app = app;
            Address = address;
            _state = app.Services.GetRequiredService<IProxyStateLookup>();
            _forwarded = forwarded;
            _inFlight = inFlight;
            Errors = errors;
        }

        public Uri Address { get; }

        /// <summary>The proxy's forwarding errors (YARP's <see cref="ForwarderError"/>), by destination.</summary>
        public ConcurrentQueue<string> Errors { get; }

        public long Forwarded(string destination) => _forwarded.GetValueOrDefault(destination);

        /// <summary>Requests forwarded to <paramref name="destination"/> and not yet answered (or failed).</summary>
        public int InFlight(string destination) => _inFlight.GetValueOrDefault(destination);

        public DestinationHealth Health(string destination) => Destination(destination).Health.Active;

        public DestinationHealth PassiveHealth(string destination) => Destination(destination).Health.Passive;

        public string[] Available() => Cluster().DestinationsState.AvailableDestinations.Select(d => d.DestinationId).Order().ToArray();

        private ClusterState Cluster() => _state.TryGetCluster("llama", out ClusterState? cluster) ? cluster : throw new InvalidOperationException("no cluster");

        private DestinationState Destination(string id) => Cluster().Destinations[id];

        public static async Task<Proxy> StartAsync(Dictionary<string, Uri> destinations)
        {
            RouteConfig[] routes = [new RouteConfig { RouteId = "all", ClusterId = "llama", Match = new RouteMatch { Path = "{**catch-all}" } }];
            ClusterConfig[] clusters =
            [
                new ClusterConfig
                {
                    ClusterId = "llama",
                    LoadBalancingPolicy = LoadBalancingPolicies.RoundRobin,
                    Destinations = destinations.ToDictionary(d => d.Key, d => new DestinationConfig { Address = d.Value.ToString() }),
                    HealthCheck = new HealthCheckConfig
                    {
                        // GET /health every second; 2 failures in a row (refused, a 503 while stopping, no answer in 5 s) take a destination out.
                        Active = new ActiveHealthCheckConfig { Enabled = true, Interval = TimeSpan.FromSeconds(1), Timeout = TimeSpan.FromSeconds(5), Policy = "ConsecutiveFailures", Path = "/health" },
                        // Requests that fail to reach a destination count too; one that did is tried again after 10 s.
                        Passive = new PassiveHealthCheckConfig { Enabled = true, Policy = "TransportFailureRate", ReactivationPeriod = TimeSpan.FromSeconds(10) },
                    },
                    Metadata = new Dictionary<string, string> { ["ConsecutiveFailuresHealthPolicy.Threshold"] = "2" },
                    // No forwarded request waits on a silent destination longer than this (streams: between two chunks).
                    HttpRequest = new ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromSeconds(30) },
                },
            ];
            WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
            builder.Services.AddReverseProxy().LoadFromMemory(routes, clusters);
            WebApplication app = builder.Build();
            var forwarded = new ConcurrentDictionary<string, long>();
            var inFlight = new ConcurrentDictionary<string, int>();
            var errors = new ConcurrentQueue<string>();
            app.MapReverseProxy(pipeline =>
            {
                pipeline.UseSessionAffinity();
                pipeline.UseLoadBalancing();
                pipeline.UsePassiveHealthChecks();
                // After load balancing: the one destination chosen.
                pipeline.Use(async (context, next) =>
                {
                    IReadOnlyList<DestinationState> chosen = context.GetReverseProxyFeature().AvailableDestinations;
                    string id = chosen.Count == 1 ? chosen[0].DestinationId : "?";
                    forwarded.AddOrUpdate(id, 1, (_, n) => n + 1);
                    context.Response.OnStarting(() =>
                    {
                        context.Response.Headers[UpstreamHeader] = id;
                        return Task.CompletedTask;
                    });
                    inFlight.AddOrUpdate(id, 1, (_, n) => n + 1);
                    try
                    {
                        await next();
                    }
                    finally
                    {
                        inFlight.AddOrUpdate(id, 0, (_, n) => n - 1);
                    }
                    if (context.Features.Get<IForwarderErrorFeature>() is { } error)
                        errors.Enqueue($"{id} {error.Error}");
                });
            });
            await app.StartAsync();
            string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new Proxy(app, new Uri(address.TrimEnd('/') + "/"), forwarded, inFlight, errors);
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
