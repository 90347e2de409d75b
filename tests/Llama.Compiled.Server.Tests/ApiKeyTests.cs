using System.ClientModel;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Tasks;
using OpenAI.Chat;
using Xunit;

namespace Llama.Compiled.Server.Tests;

public sealed class ApiKeyTests
{
    [Fact]
    public async Task Requests_need_the_bearer_key_except_health()
    {
        await using TestServer server = await TestServer.StartAsync(new ServerOptions { ApiKey = "sk-test-key" });

        foreach (string? key in new[] { null, "sk-wrong", "sk-test-ke", "sk-test-key-longer" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "v1/models");
            if (key is not null)
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using HttpResponseMessage response = await server.Http.SendAsync(request);
            Assert.Equal(401, (int)response.StatusCode);
            using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal("invalid_api_key", json.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.Equal("invalid_request_error", json.RootElement.GetProperty("error").GetProperty("type").GetString());
        }

        using (HttpResponseMessage health = await server.Http.GetAsync("health"))
            Assert.Equal(200, (int)health.StatusCode);

        ChatCompletion completion = await server.ChatClient("sk-test-key").CompleteChatAsync(
            [new UserChatMessage("Hi")], new ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.Equal(3, completion.Usage.OutputTokenCount);

        var e = await Assert.ThrowsAsync<ClientResultException>(() => server.ChatClient("sk-nope").CompleteChatAsync([new UserChatMessage("Hi")]));
        Assert.Equal(401, e.Status);
    }

    [Fact]
    public void Listening_beyond_loopback_is_known()
    {
        Assert.True(new ServerOptions().IsLoopback);
        Assert.True(new ServerOptions { Host = "::1" }.IsLoopback);
        Assert.True(new ServerOptions { Host = "localhost" }.IsLoopback);
        Assert.False(new ServerOptions { Host = "0.0.0.0" }.IsLoopback);
    }
}
