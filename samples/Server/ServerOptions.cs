using System;
using System.Globalization;
using System.IO;
using System.Net;

namespace Llama.Compiled.Server;

/// <summary>The server's settings, from the command line (see <see cref="Usage"/>).</summary>
public sealed record ServerOptions
{
    public const string Usage = """
        Usage: Server [options]   an OpenAI-compatible HTTP server for a compiled model
          --model PATH             model folder or weights file, with tokenizer.model beside it
                                   (default: ../shared/models/stories260K/hf from the repository root)
          --host ADDRESS           address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all interfaces)
          --port N                 port (default 8080; 0 picks a free one)
          --api-key KEY            require "Authorization: Bearer KEY" on /v1/* (default: none)
          --template NAME          chat template: auto (from tokenizer_config.json), llama2, llama3, llama3.1,
                                   chatml, zephyr, plain (default auto)
          --max-sequences N        sequences generated together (default 8)
          --max-queue N            requests waiting for a sequence before 429 (default 64)
          --threads N              threads of the forward pass (default: min(cores, 8))
          --shutdown-timeout S     seconds in-flight requests get to finish on SIGTERM/Ctrl+C (default 30)
          --help                   show this help
        Endpoints: POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings, GET /v1/models,
                   GET /health, GET /metrics (Prometheus).
        """;

    public string ModelPath { get; init; } = DefaultModelPath();
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    public string? ApiKey { get; init; }
    public string Template { get; init; } = "auto";
    public int MaxSequences { get; init; } = 8;
    public int MaxQueue { get; init; } = 64;
    public int Threads { get; init; } = Math.Min(Environment.ProcessorCount, 8);
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>True when the server listens only on the loopback interface.</summary>
    public bool IsLoopback => Host is "localhost" || (IPAddress.TryParse(Host, out IPAddress? address) && IPAddress.IsLoopback(address));

    /// <summary>The options the command line gives; null when it asks for help.</summary>
    /// <exception cref="ArgumentException">An unknown option, a missing or invalid value.</exception>
    public static ServerOptions? Parse(string[] args)
    {
        var options = new ServerOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i];
            if (name is "--help" or "-h")
                return null;
            if (!name.StartsWith("--", StringComparison.Ordinal))
                throw new ArgumentException($"unknown argument '{name}' (see --help)");
            if (i + 1 == args.Length)
                throw new ArgumentException($"{name} needs a value (see --help)");
            string value = args[++i];
            options = name switch
            {
                "--model" => options with { ModelPath = value },
                "--host" => options with { Host = CheckHost(value) },
                "--port" => options with { Port = Number<int>(name, value, p => p is >= 0 and <= 65535, "a port from 0 to 65535") },
                "--api-key" => options with { ApiKey = value.Length > 0 ? value : throw new ArgumentException("--api-key must not be empty") },
                "--template" => options with { Template = CheckTemplate(value) },
                "--max-sequences" => options with { MaxSequences = Number<int>(name, value, n => n is >= 1 and <= 256, "an integer from 1 to 256") },
                "--max-queue" => options with { MaxQueue = Number<int>(name, value, n => n is >= 0 and <= 100_000, "an integer from 0 to 100000") },
                "--threads" => options with { Threads = Number<int>(name, value, n => n is >= 1 and <= 256, "an integer from 1 to 256") },
                "--shutdown-timeout" => options with { ShutdownTimeout = TimeSpan.FromSeconds(Number<double>(name, value, s => s is >= 0 and <= 3600, "a number of seconds from 0 to 3600")) },
                _ => throw new ArgumentException($"unknown option '{name}' (see --help)"),
            };
        }
        return options;
    }

    private static string CheckHost(string value)
    {
        if (value is "localhost" || IPAddress.TryParse(value, out _))
            return value;
        throw new ArgumentException($"--host must be an IP address or localhost, not '{value}'");
    }

    private static string CheckTemplate(string value)
    {
        if (value.Equals("auto", StringComparison.OrdinalIgnoreCase))
            return "auto";
        ChatTemplate.FromName(value); // throws for an unknown name, listing the known ones
        return value;
    }

    private static T Number<T>(string name, string value, Func<T, bool> isValid, string expected)
        where T : ISpanParsable<T>
    {
        if (T.TryParse(value, CultureInfo.InvariantCulture, out T? number) && isValid(number))
            return number;
        throw new ArgumentException($"{name} must be {expected}, not '{value}'");
    }

    /// <summary>stories260K's Hugging Face folder beside the repository (found above this program's binary, else the current directory).</summary>
    private static string DefaultModelPath()
    {
        string root = Directory.GetCurrentDirectory();
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
            {
                root = dir;
                break;
            }
        }
        return Path.GetFullPath(Path.Combine(root, "..", "shared", "models", "stories260K", "hf"));
    }
}
