using System;
using System.IO;
using System.Diagnostics.Metrics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Llama.Compiled.Server.Api;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Llama.Compiled.Server;

/// <summary>Builds the server: Kestrel on the given address, the OpenAI endpoints, auth, metrics, graceful shutdown.</summary>
public static partial class ServerApp
{
    /// <summary>
    /// Loads the model and builds the app (not started). <paramref name="configureLogging"/> lets tests quiet the console.
    /// </summary>
    public static WebApplication Build(ServerOptions options, Action<ILoggingBuilder>? configureLogging = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        // The command line is parsed by ServerOptions; none of it goes to configuration (no --urls surprises).
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.AddSimpleConsole(console =>
        {
            console.SingleLine = true;
            console.TimestampFormat = "HH:mm:ss ";
        });
        // One line per request is the access log's job; the framework says only what goes wrong.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        configureLogging?.Invoke(builder.Logging);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            if (options.Host is "localhost")
                kestrel.ListenLocalhost(options.Port);
            else
                kestrel.Listen(IPAddress.Parse(options.Host), options.Port);
        });
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.ShutdownTimeout);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(services => LlamaBackend.Load(options, services.GetRequiredService<IMeterFactory>()));
        builder.Services.AddSingleton<ServerMetrics>();
        builder.Services.AddSingleton<OpenAIEndpoints>();
        builder.Services.AddHostedService<GeneratorLifetime>();
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(ServerMetrics.MeterName))
            .WithMetrics(metrics => metrics
            .AddMeter(BatchedGenerator.MeterName, ServerMetrics.MeterName)
            // Time to first token is milliseconds to seconds: buckets for that, not the SDK's default (0 to 10000).
            .AddView("gen_ai.server.time_to_first_token", new ExplicitBucketHistogramConfiguration
            {
                Boundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            })
            .AddPrometheusExporter());

        WebApplication app = builder.Build();
        // Load now: a missing or broken model fails Build (the caller prints it), not the first request.
        app.Services.GetRequiredService<LlamaBackend>();
        ServerMetrics serverMetrics = app.Services.GetRequiredService<ServerMetrics>();
        ILogger logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Llama.Compiled.Server");

        // Requests by status (every route, errors included), then the OpenAI-style error for whatever a handler threw.
        app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
            }
            finally
            {
                serverMetrics.Request(EndpointName(context.Request.Path), context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted ? 499 : context.Response.StatusCode);
            }
        });
        app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
            }
            catch (ApiException e) when (!context.Response.HasStarted)
            {
                await Http.WriteErrorAsync(context, e);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
            {
                // The client is gone (mid-body or mid-answer); nothing to answer.
            }
            catch (Exception e) when (!context.Response.HasStarted)
            {
                LogUnexpected(logger, e, context.Request.Path);
                await Http.WriteErrorAsync(context, new ApiException(StatusCodes.Status500InternalServerError, "The server had an error while processing your request."));
            }
        });
        if (options.ApiKey is { } apiKey)
            app.Use(RequireApiKey(apiKey));

        OpenAIEndpoints endpoints = app.Services.GetRequiredService<OpenAIEndpoints>();
        app.MapPost("/v1/chat/completions", (RequestDelegate)endpoints.ChatCompletionsAsync);
        app.MapPost("/v1/completions", (RequestDelegate)endpoints.CompletionsAsync);
        app.MapPost("/v1/embeddings", (RequestDelegate)endpoints.EmbeddingsAsync);
        app.MapGet("/v1/models", (RequestDelegate)endpoints.ModelsAsync);
        app.MapGet("/v1/models/{id}", (RequestDelegate)endpoints.ModelAsync);
        app.MapGet("/health", (RequestDelegate)endpoints.HealthAsync);
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapFallback((RequestDelegate)(context => throw new ApiException(StatusCodes.Status404NotFound,
            $"Unknown request URL: {context.Request.Method} {context.Request.Path}.", code: "unknown_url")));

        if (!options.IsLoopback && options.ApiKey is null)
            LogOpenToNetwork(logger, options.Host);
        return app;
    }

    /// <summary>
    /// "Authorization: Bearer KEY" on /v1/*; /health and /metrics stay open. The key is compared as SHA-256 hashes with
    /// <see cref="CryptographicOperations.FixedTimeEquals"/>: the time taken tells neither the key's bytes nor its length.
    /// </summary>
    private static Func<HttpContext, RequestDelegate, Task> RequireApiKey(string apiKey)
    {
        byte[] expected = SHA256.HashData(Encoding.UTF8.GetBytes(apiKey));
        return (context, next) =>
        {
            if (!context.Request.Path.StartsWithSegments("/v1", StringComparison.Ordinal))
                return next(context);
            string header = context.Request.Headers.Authorization.ToString();
            const string Bearer = "Bearer ";
            if (header.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
            {
                byte[] actual = SHA256.HashData(Encoding.UTF8.GetBytes(header.AsSpan(Bearer.Length).Trim().ToString()));
                if (CryptographicOperations.FixedTimeEquals(actual, expected))
                    return next(context);
            }
            context.Response.Headers.WWWAuthenticate = "Bearer";
            throw new ApiException(StatusCodes.Status401Unauthorized,
                header.Length == 0 ? "You didn't provide an API key. Provide it in an Authorization header (Authorization: Bearer YOUR_KEY)." : "Incorrect API key provided.",
                code: "invalid_api_key");
        };
    }

    private static string EndpointName(PathString path) => path.Value switch
    {
        "/v1/chat/completions" => "chat",
        "/v1/completions" => "completions",
        "/v1/embeddings" => "embeddings",
        "/v1/models" => "models",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    };

    [LoggerMessage(Level = LogLevel.Error, Message = "Unexpected error on {Path}")]
    private static partial void LogUnexpected(ILogger logger, Exception exception, PathString path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Listening on {Host}, not only loopback, without an API key: anyone who can reach this address can use the model. Pass --api-key KEY.")]
    private static partial void LogOpenToNetwork(ILogger logger, string host);
}

/// <summary>
/// On shutdown (SIGTERM, Ctrl+C): no new generations; those in flight get until the host's shutdown timeout
/// (--shutdown-timeout) to finish, then are cancelled.
/// </summary>
internal sealed partial class GeneratorLifetime(LlamaBackend backend, ILogger<GeneratorLifetime> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        backend.Generator.StopAccepting();
        int running = backend.ActiveSequences + backend.QueueLength;
        if (running > 0)
            LogDraining(logger, running);
        await backend.Generator.DrainAsync(cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Shutting down: waiting for {Count} generations to finish")]
    private static partial void LogDraining(ILogger logger, int count);
}
