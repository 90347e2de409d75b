using System;
using System.ClientModel;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenAI;
using Xunit;

namespace Llama.Compiled.Server.Tests;

/// <summary>Locations of the shared test models (../shared/models from the repository root).</summary>
internal static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Stories260KHf => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "models", "stories260K", "hf"));

    private static string FindRepoRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
                return dir;
        }
        throw new InvalidOperationException("Llama.Compiled.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A server in this process, on a free loopback port, serving stories260K.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private TestServer(WebApplication app, Uri baseAddress, ServerOptions options)
    {
        App = app;
        BaseAddress = baseAddress;
        Options = options;
        Http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public WebApplication App { get; }
    public Uri BaseAddress { get; }
    public ServerOptions Options { get; }
    public HttpClient Http { get; }
    public LlamaBackend Backend => App.Services.GetRequiredService<LlamaBackend>();

    public static async Task<TestServer> StartAsync(ServerOptions? options = null)
    {
        options ??= new ServerOptions();
        options = options with { ModelPath = TestPaths.Stories260KHf, Host = "127.0.0.1", Port = 0 };
        WebApplication app = ServerApp.Build(options, logging => logging.SetMinimumLevel(LogLevel.Warning));
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new TestServer(app, new Uri(address.TrimEnd('/') + "/"), options);
    }

    /// <summary>Options for the official OpenAI client: this server's /v1, no retries (a 429 is the test's to see).</summary>
    public OpenAIClientOptions ClientOptions() => new() { Endpoint = new Uri(BaseAddress, "v1"), RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(0) };

    public OpenAI.Chat.ChatClient ChatClient(string apiKey = "unused") => new("stories260K", new ApiKeyCredential(apiKey), ClientOptions());

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>One server shared by the tests of a collection (loading it takes a moment; the tests do not change it).</summary>
public sealed class SharedServer : IAsyncLifetime
{
    public TestServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

[CollectionDefinition(Name)]
public sealed class SharedServerCollection : ICollectionFixture<SharedServer>
{
    public const string Name = "shared server";
}
