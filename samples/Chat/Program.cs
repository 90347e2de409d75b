using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Llama.Compiled;
using Microsoft.Extensions.AI;

namespace Chat;

/// <summary>
/// An interactive chat: <c>dotnet run --project samples/Chat -c Release</c>, then type. Reads one user
/// turn per line from stdin (so it also works piped), streams each answer to stdout, and prints its
/// token counts and speed to stderr. <c>/reset</c> forgets the conversation, <c>/exit</c> (or end of
/// input) quits, Ctrl+C stops the answer being written.
/// </summary>
internal static class Program
{
    private const string Usage = """
        Usage: Chat [options]   (then one message per line on stdin; /reset, /exit, /help)
          --model PATH        model folder or weights file, with tokenizer.model beside it
                              (default: ../shared/models/stories260K/hf from the repository root)
          --template NAME     chat template: auto (from the model's tokenizer_config.json; plain when
                              it has none), llama2, llama3, llama3.1, chatml, zephyr, plain (default auto)
          --system TEXT       system message (default: none)
          --max-tokens N      most tokens per answer (default 128)
          --temperature T     sampling temperature; 0 = greedy (default 1.0)
          --top-p P           nucleus sampling threshold; 1 = off (default 0.9)
          --seed S            random seed, for reproducible answers (default: random)
          --help              show this help
        """;

    private static async Task<int> Main(string[] args)
    {
        try
        {
            Arguments? arguments = Arguments.Parse(args);
            if (arguments is null)
            {
                Console.WriteLine(Usage);
                return 0;
            }
            await RunAsync(arguments);
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException or ModelFormatException or NotSupportedException)
        {
            // Expected failures (bad arguments, missing or broken model files) get one line, not a stack trace.
            Console.Error.WriteLine("error: " + Describe(e));
            return 2;
        }
    }

    /// <summary>The message on one line, without the " (Parameter 'x')" that ArgumentException adds.</summary>
    private static string Describe(Exception e)
    {
        string message = e.Message.Split('\n')[0].TrimEnd();
        return e is ArgumentException { ParamName: string name } ? message.Replace($" (Parameter '{name}')", "") : message;
    }

    private static async Task RunAsync(Arguments arguments)
    {
        using Stories260K model = Stories260K.Load(arguments.ModelPath);
        ChatTemplate template = arguments.Template is "auto"
            ? ChatTemplate.FromTokenizerConfig(arguments.ModelPath)
            : ChatTemplate.FromName(arguments.Template);
        var defaults = new GenerationOptions
        {
            MaxNewTokens = arguments.MaxTokens,
            Sampling = new SamplingOptions { Temperature = arguments.Temperature, TopP = arguments.TopP, Seed = arguments.Seed },
        };
        using LlamaChatClient client = model.AsChatClient(LlamaTokenizers.Load(arguments.ModelPath), template, defaults);

        // UTF-8 everywhere: answers may contain characters outside the console's default code page.
        Console.OutputEncoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
        TextWriter stdout = Console.Out;
        TextWriter stderr = Console.Error;
        bool interactive = !Console.IsInputRedirected;
        if (interactive)
            stderr.WriteLine($"Chatting with {client.ModelId} ({template.Name} template). /reset forgets, /exit quits, Ctrl+C stops an answer.");

        // Ctrl+C stops the answer being written, never the app.
        CancellationTokenSource? answering = null;
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            CancellationTokenSource? current = Volatile.Read(ref answering);
            if (current is not null)
                current.Cancel();
            else
                stderr.WriteLine("(use /exit or end the input to quit)");
        };

        var history = new List<ChatMessage>();
        if (arguments.System is { Length: > 0 } system)
            history.Add(new ChatMessage(ChatRole.System, system));
        int systemCount = history.Count;

        while (true)
        {
            if (interactive)
            {
                stdout.Write("> ");
                stdout.Flush();
            }
            string? line = Console.In.ReadLine();
            if (line is null)
                break;
            line = line.Trim();
            if (line.Length == 0)
                continue;
            if (!interactive)
                stdout.WriteLine("> " + line);
            if (line is "/exit" or "/quit")
                break;
            if (line is "/reset")
            {
                history.RemoveRange(systemCount, history.Count - systemCount);
                stderr.WriteLine("(conversation reset)");
                continue;
            }
            if (line is "/help")
            {
                stderr.WriteLine("Type a message and press Enter. /reset forgets the conversation, /exit quits, Ctrl+C stops an answer.");
                continue;
            }

            history.Add(new ChatMessage(ChatRole.User, line));
            if (!FitContext(client, history, systemCount, arguments.MaxTokens, stderr))
            {
                history.RemoveAt(history.Count - 1);
                continue;
            }

            using var cancellation = new CancellationTokenSource();
            Volatile.Write(ref answering, cancellation);
            var answer = new StringBuilder();
            bool stopped = false;
            try
            {
                await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(history, cancellationToken: cancellation.Token))
                {
                    string text = update.Text;
                    if (text.Length == 0)
                        continue;
                    answer.Append(text);
                    stdout.Write(text);
                    stdout.Flush();
                }
            }
            catch (OperationCanceledException)
            {
                stopped = true;
            }
            finally
            {
                Volatile.Write(ref answering, null);
            }
            stdout.WriteLine();
            stdout.Flush();
            // A stopped answer stays in the conversation as far as it got.
            history.Add(new ChatMessage(ChatRole.Assistant, answer.ToString()));
            PrintStats(stderr, client.LastStats, stopped);
        }
    }

    /// <summary>
    /// Drops the oldest turns (never the system message or the new one) until the conversation and an
    /// answer of <paramref name="maxTokens"/> fit in the context; false when even the new message alone does not.
    /// </summary>
    private static bool FitContext(LlamaChatClient client, List<ChatMessage> history, int systemCount, int maxTokens, TextWriter stderr)
    {
        int context = client.Model.Shape.MaxContext;
        int limit = Math.Max(1, context - maxTokens);
        bool dropped = false;
        while (client.EncodePrompt(history).Length > limit)
        {
            if (history.Count - systemCount <= 1)
            {
                stderr.WriteLine($"(message too long: it and a {maxTokens}-token answer do not fit in the {context}-token context)");
                return false;
            }
            // The oldest turn, and its answer when there is one.
            int count = history.Count - systemCount > 2 && history[systemCount + 1].Role == ChatRole.Assistant ? 2 : 1;
            history.RemoveRange(systemCount, count);
            dropped = true;
        }
        if (dropped)
            stderr.WriteLine("(oldest turns forgotten to fit the context)");
        return true;
    }

    private static void PrintStats(TextWriter stderr, GenerationStats? stats, bool stopped)
    {
        if (stats is null)
            return;
        stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(stopped ? "[stopped] " : "")}{stats.GeneratedTokens} tokens, {stats.DecodeTokensPerSecond:0} tok/s, first token after {stats.PrefillTime.TotalMilliseconds:0.0} ms (prompt {stats.PromptTokens} tokens, {stats.ReusedPromptTokens} reused)"));
    }

    private sealed record Arguments(string ModelPath, string Template, string? System, int MaxTokens, float Temperature, float TopP, ulong? Seed)
    {
        /// <summary>The parsed command line, or null when help was asked for.</summary>
        public static Arguments? Parse(string[] args)
        {
            string? modelPath = null, system = null;
            string template = "auto";
            int maxTokens = 128;
            float temperature = 1f, topP = 0.9f;
            ulong? seed = null;
            for (int i = 0; i < args.Length; i++)
            {
                string name = args[i];
                if (name is "--help" or "-h")
                    return null;
                if (i + 1 == args.Length)
                    throw new ArgumentException(name.StartsWith("--", StringComparison.Ordinal) ? $"{name} needs a value (see --help)" : $"unknown argument '{name}' (see --help)");
                string value = args[++i];
                switch (name)
                {
                    case "--model": modelPath = value; break;
                    case "--template": template = ParseTemplate(value); break;
                    case "--system": system = value; break;
                    case "--max-tokens": maxTokens = ParseNumber<int>(name, value, n => n > 0, "an integer > 0"); break;
                    case "--temperature": temperature = ParseNumber<float>(name, value, t => t >= 0 && float.IsFinite(t), "a number >= 0"); break;
                    case "--top-p": topP = ParseNumber<float>(name, value, p => p is >= 0 and <= 1, "a number from 0 to 1"); break;
                    case "--seed": seed = ParseNumber<ulong>(name, value, _ => true, "an integer from 0 to 2^64-1"); break;
                    default: throw new ArgumentException($"unknown option '{name}' (see --help)");
                }
            }
            return new Arguments(modelPath ?? DefaultModelPath(), template, system, maxTokens, temperature, topP, seed);
        }

        private static string ParseTemplate(string value)
        {
            if (value.Equals("auto", StringComparison.OrdinalIgnoreCase))
                return "auto";
            ChatTemplate.FromName(value); // throws for an unknown name, listing the known ones
            return value;
        }

        private static T ParseNumber<T>(string name, string value, Func<T, bool> isValid, string expected)
            where T : ISpanParsable<T>
        {
            if (T.TryParse(value, CultureInfo.InvariantCulture, out T? number) && isValid(number))
                return number;
            throw new ArgumentException($"{name} must be {expected}, not '{value}'");
        }

        /// <summary>stories260K's Hugging Face folder (or its f32 GGUF), beside the repository (found above this program's binary).</summary>
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
#if CHAT_GGUF
            return Path.GetFullPath(Path.Combine(root, "..", "shared", "models", "stories260K", "stories260K-f32.gguf"));
#else
            return Path.GetFullPath(Path.Combine(root, "..", "shared", "models", "stories260K", "hf"));
#endif
        }
    }
}

/// <summary>
/// stories260K (Karpathy's tinyllamas), compiled from its config.json at build time, or from its GGUF's header when built
/// with -p:ChatFromGguf=true (see Chat.csproj).
/// </summary>
#if CHAT_GGUF
[LlamaModel("stories260K/stories260K-f32.gguf")]
#else
[LlamaModel("stories260K/hf/config.json")]
#endif
internal partial class Stories260K;
