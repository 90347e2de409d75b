using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Llama.Compiled.Server.Tests;

/// <summary>Many clients at once: every request answered, no stream cut short or mixed with another, memory flat.</summary>
public sealed class LoadTests(ITestOutputHelper output)
{
    private const int Clients = 32, RequestsPerClient = 20, Rounds = 4, MaxTokens = 12;

    private static readonly string[] Subjects =
    [
        "a dog", "a cat", "a bird", "a fish", "a frog", "a bear", "a lion", "a mouse", "a tree", "a boat", "a car", "a ball",
        "the sun", "the moon", "a star", "a cake", "a girl", "a boy", "a king", "a queen", "a duck", "a bee", "a bus", "a hat",
        "a box", "a shoe", "a cup", "a toy", "a park", "a rock", "a kite", "a snow man",
    ];

    private static string Body(int client, bool stream) =>
        $$"""{"model":"stories260K","messages":[{"role":"user","content":"Tell me a story about {{Subjects[client]}}."}],"max_tokens":{{MaxTokens}},"temperature":1,"seed":{{client}},"stream":{{(stream ? "true" : "false")}}}""";

    [Fact]
    public async Task Thirty_two_clients_times_twenty_requests_each_get_their_own_answer()
    {
        await using TestServer server = await TestServer.StartAsync();
        var expected = new string[Clients];
        for (int c = 0; c < Clients; c++)
            expected[c] = (await Reference.SeededAsync($"Tell me a story about {Subjects[c]}.", MaxTokens, c)).Text;
        // Greedy answers of stories260K to these prompts mostly agree ("Anna, I'm scared"): each client samples with a
        // seed of its own, so that an answer given to the wrong client shows.
        Assert.True(expected.Distinct().Count() > Clients * 3 / 4, "the clients' answers should differ");

        var statuses = new ConcurrentDictionary<int, int>();
        var failures = new ConcurrentQueue<string>();
        long baseline = 0;
        var clock = Stopwatch.StartNew();
        for (int round = 0; round < Rounds; round++)
        {
            await Task.WhenAll(Enumerable.Range(0, Clients).Select(client => Task.Run(async () =>
            {
                for (int i = 0; i < RequestsPerClient / Rounds; i++)
                {
                    bool stream = (client + i) % 2 == 0;
                    (int status, string? text) = await SendAsync(server.Http, Body(client, stream), stream);
                    statuses.AddOrUpdate(status, 1, (_, n) => n + 1);
                    if (status == 200 && text != expected[client])
                        failures.Enqueue($"client {client} request {i} (stream {stream}): '{text}' != '{expected[client]}'");
                    else if (status is not (200 or 429))
                        failures.Enqueue($"client {client} request {i}: status {status}");
                }
            })));
            long memory = ManagedMemory();
            output.WriteLine($"round {round}: {clock.Elapsed.TotalSeconds:F1} s, managed memory {memory / 1024 / 1024.0:F1} MiB, statuses {string.Join(", ", statuses.Select(s => $"{s.Key}: {s.Value}"))}");
            if (round == 0)
                baseline = memory;
            else
                Assert.True(memory < baseline + 48 * 1024 * 1024, $"managed memory grew from {baseline} to {memory} bytes");
        }
        Assert.Empty(failures);
        Assert.Equal(Clients * RequestsPerClient, statuses.Values.Sum());
        Assert.True(statuses.GetValueOrDefault(200) > Clients * RequestsPerClient / 2);
        Assert.Equal(0, server.Backend.ActiveSequences);
        Assert.Equal(0, server.Backend.QueueLength);
    }

    private static long ManagedMemory()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    /// <summary>The status and, for a 200, the whole answer (a stream must end with finish_reason and [DONE]).</summary>
    private static async Task<(int Status, string? Text)> SendAsync(HttpClient http, string body, bool stream)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        int status = (int)response.StatusCode;
        if (status == 429)
        {
            Assert.True(response.Headers.RetryAfter is not null, "429 without Retry-After");
            return (status, null);
        }
        if (status != 200)
            return (status, await response.Content.ReadAsStringAsync());
        if (!stream)
        {
            using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return (status, json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        }
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<JsonDocument>();
        string? id = null;
        bool done = false, finished = false;
        await foreach (string data in Sse.ReadEventsAsync(reader))
        {
            if (data == "[DONE]")
            {
                done = true;
                break;
            }
            var e = JsonDocument.Parse(data);
            string eventId = e.RootElement.GetProperty("id").GetString()!;
            Assert.True(id is null || id == eventId, "events of two completions in one stream");
            id = eventId;
            if (e.RootElement.GetProperty("choices") is { } choices && choices.GetArrayLength() > 0 && choices[0].GetProperty("finish_reason").ValueKind == JsonValueKind.String)
                finished = true;
            events.Add(e);
        }
        Assert.True(done && finished, "the stream was cut short");
        return (status, Sse.ChatText(events));
    }

    [Fact]
    public async Task A_full_queue_is_a_429_with_Retry_After()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { MaxSequences = 1, MaxQueue = 1 });
        const string Body = """{"messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":400,"temperature":1,"seed":1}""";
        HttpResponseMessage[] responses = await Task.WhenAll(Enumerable.Range(0, 32).Select(_ => server.Http.PostAsync("v1/chat/completions", OpenAIClientTests.Json(Body))));
        try
        {
            Assert.All(responses, r => Assert.True((int)r.StatusCode is 200 or 429));
            HttpResponseMessage? busy = responses.FirstOrDefault(r => (int)r.StatusCode == 429);
            Assert.True(busy is not null, "32 requests at once with one sequence and a queue of one: some must be refused");
            Assert.Equal(TimeSpan.FromSeconds(1), busy.Headers.RetryAfter?.Delta);
            using JsonDocument json = JsonDocument.Parse(await busy.Content.ReadAsStringAsync());
            Assert.Equal("rate_limit_error", json.RootElement.GetProperty("error").GetProperty("type").GetString());
            Assert.Contains(responses, r => (int)r.StatusCode == 200);
        }
        finally
        {
            foreach (HttpResponseMessage r in responses)
                r.Dispose();
        }
    }

    [Fact]
    public async Task A_disconnect_storm_frees_every_slot_at_once()
    {
        await using TestServer server = await TestServer.StartAsync();
        const int Streams = 40;
        const string StormBody = """{"messages":[{"role":"user","content":"Tell me a very long story."}],"max_tokens":500,"temperature":1,"stream":true}""";
        await Task.WhenAll(Enumerable.Range(0, Streams).Select(async _ =>
        {
            // A connection of its own, dropped mid-stream (not drained for reuse, as HttpClient would by default).
            using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero }) { BaseAddress = server.BaseAddress };
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = OpenAIClientTests.Json(StormBody) };
            using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(200, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync()); // the first chunk, then gone
        }));

        var clock = Stopwatch.StartNew();
        while ((server.Backend.ActiveSequences > 0 || server.Backend.QueueLength > 0) && clock.Elapsed < TimeSpan.FromSeconds(10))
            await Task.Delay(10);
        output.WriteLine($"slots free {clock.ElapsedMilliseconds} ms after the last disconnect");
        Assert.Equal(0, server.Backend.ActiveSequences);
        Assert.Equal(0, server.Backend.QueueLength);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"slots freed {clock.ElapsedMilliseconds} ms after the disconnects");

        (int status, string? text) = await SendAsync(server.Http, Body(0, stream: true), stream: true);
        Assert.Equal(200, status);
        Assert.Equal((await Reference.SeededAsync($"Tell me a story about {Subjects[0]}.", MaxTokens, 0)).Text, text);
    }
}
