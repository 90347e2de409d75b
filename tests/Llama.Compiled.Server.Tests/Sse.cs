using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace Llama.Compiled.Server.Tests;

/// <summary>Reads server-sent events the way a client does.</summary>
internal static class Sse
{
    /// <summary>POSTs <paramref name="json"/>, expects 200 and an event stream, and returns every event up to <c>[DONE]</c> (which must come).</summary>
    public static async Task<List<JsonDocument>> ReadAllAsync(HttpClient http, string path, string json, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        var events = new List<JsonDocument>();
        await foreach (string data in ReadEventsAsync(reader, cancellationToken))
        {
            if (data == "[DONE]")
            {
                Assert.Null(await reader.ReadLineAsync(cancellationToken)); // nothing after [DONE]
                return events;
            }
            events.Add(JsonDocument.Parse(data));
        }
        throw new InvalidDataException($"The stream ended without [DONE] after {events.Count} events.");
    }

    /// <summary>The data of each event, as it arrives.</summary>
    public static async IAsyncEnumerable<string> ReadEventsAsync(StreamReader reader, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
                continue;
            Assert.StartsWith("data: ", line);
            Assert.Equal("", await reader.ReadLineAsync(cancellationToken)); // each event ends with a blank line
            yield return line["data: ".Length..];
        }
    }

    /// <summary>The chat content of a stream's events, concatenated.</summary>
    public static string ChatText(List<JsonDocument> events)
    {
        var text = new StringBuilder();
        foreach (JsonDocument e in events)
        {
            foreach (JsonElement choice in e.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("delta").TryGetProperty("content", out JsonElement content))
                    text.Append(content.GetString());
            }
        }
        return text.ToString();
    }
}
