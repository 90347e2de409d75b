using System;
using System.ClientModel;
using System.Linq;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Threading.Tasks;
using OpenAI.Chat;
using Xunit;

namespace Llama.Compiled.Server.Tests;

/// <summary>Bad requests get a 400 with OpenAI's error object, never a 500 or a dropped connection.</summary>
[Collection(SharedServerCollection.Name)]
public sealed class ErrorTests(SharedServer shared)
{
    private TestServer Server => shared.Server;

    private static readonly string LongPrompt = string.Join(' ', Enumerable.Repeat("The little dog ran to the big red house.", 80));

    public static TheoryData<string, string, string?> BadRequests => new()
    {
        // path, body, the error's param (null: none)
        { "v1/chat/completions", """{"messages":""", "messages" },                                // malformed JSON (cut short where messages should be)
        { "v1/chat/completions", "hello", null },                                                   // not JSON
        { "v1/chat/completions", "", null },                                                        // empty body
        { "v1/chat/completions", "null", null },                                                    // not an object
        { "v1/chat/completions", "[1,2]", null },                                                   // not an object
        { "v1/chat/completions", """{"model":"x"}""", "messages" },                                 // missing messages
        { "v1/chat/completions", """{"messages":[]}""", "messages" },                               // empty messages
        { "v1/chat/completions", """{"messages":"hi"}""", "messages" },                             // wrong type
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", "temperature" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":3}""", "temperature" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"temperature":-0.5}""", "temperature" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"top_p":1.5}""", "top_p" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}""", "max_tokens" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":-3}""", "max_tokens" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":0}""", "max_completion_tokens" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":1.5}""", "max_tokens" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}""", "stream" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stop":7}""", "stop" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"stop":["a",1]}""", "stop[1]" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"presence_penalty":2.5}""", "presence_penalty" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"seed":"x"}""", "seed" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"n":2}""", "n" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}""", "tools" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"logprobs":true}""", "logprobs" },
        { "v1/chat/completions", """{"messages":[{"role":"wizard","content":"hi"}]}""", "messages[0].role" },
        { "v1/chat/completions", """{"messages":[{"role":"user"}]}""", "messages[0].content" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":42}]}""", "messages[0].content" },
        { "v1/chat/completions", """{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", "messages[0].content[0].type" },
        { "v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"" + LongPrompt + "\"}]}", "messages" },
        { "v1/completions", """{"max_tokens":5}""", "prompt" },
        { "v1/completions", """{"prompt":5}""", "prompt" },
        { "v1/completions", """{"prompt":"hi","max_tokens":0}""", "max_tokens" },
        { "v1/completions", """{"prompt":"hi","echo":true}""", "echo" },
        { "v1/completions", """{"prompt":[1,99999]}""", "prompt[1]" },
        { "v1/completions", "{\"prompt\":\"" + LongPrompt + "\"}", "prompt" },
        { "v1/embeddings", """{"input":3}""", "input" },
        { "v1/embeddings", """{"input":[]}""", "input" },
        { "v1/embeddings", """{"input":"hi","encoding_format":"int8"}""", "encoding_format" },
        { "v1/embeddings", """{"input":"hi","dimensions":3}""", "dimensions" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_request_is_a_400_with_an_OpenAI_error(string path, string body, string? param)
    {
        using HttpResponseMessage response = await Server.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(400 == (int)response.StatusCode, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using JsonDocument json = JsonDocument.Parse(text);
        JsonElement error = json.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.True(error.TryGetProperty("code", out _));
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task The_official_client_sees_a_400_as_a_ClientResultException()
    {
        ChatClient client = Server.ChatClient();
        var e = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync(
            [new UserChatMessage("hi")], new ChatCompletionOptions { Temperature = 5 }));
        Assert.Equal(400, e.Status);
        Assert.Contains("temperature", e.Message);
    }

    [Fact]
    public async Task Unknown_fields_are_ignored_and_unknown_urls_are_404s()
    {
        using HttpResponseMessage ok = await Server.Http.PostAsync("v1/chat/completions", OpenAIClientTests.Json(
            """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"user":"u1","metadata":{"a":1},"parallel_tool_calls":false,"store":false}"""));
        Assert.Equal(200, (int)ok.StatusCode);

        using HttpResponseMessage missing = await Server.Http.GetAsync("v1/nothing");
        Assert.Equal(404, (int)missing.StatusCode);
        using JsonDocument json = JsonDocument.Parse(await missing.Content.ReadAsStringAsync());
        Assert.Equal("invalid_request_error", json.RootElement.GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task Health_is_ok_after_all_that()
    {
        using HttpResponseMessage response = await Server.Http.GetAsync("health");
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("""{"status":"ok"}""", await response.Content.ReadAsStringAsync());
    }
}
