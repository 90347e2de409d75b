using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;
using Llama.Compiled;
using Microsoft.ML.Tokenizers;

namespace Stories;

/// <summary>
/// Tells a tiny story: <c>dotnet run --project samples/Stories -c Release -- --prompt "Once upon a time"</c>.
/// The prompt is printed, then the generated text as it comes; counts and speed go to stderr.
/// </summary>
internal static class Program
{
    private const string Usage = """
        Usage: Stories [options]
          --model PATH        model folder or weights file, with tokenizer.model beside it
                              (default: ../shared/models/stories260K/hf from the repository root, or
                              stories260K-f32.gguf there when built with -p:StoriesFromGguf=true)
          --prompt TEXT       text to continue (default: none, the story starts from scratch)
          --max-tokens N      most tokens to generate (default 256)
          --temperature T     sampling temperature; 0 = greedy (default 1.0)
          --top-p P           nucleus sampling threshold; 1 = off (default 0.9)
          --seed S            random seed, for a reproducible story (default: random)
          --help              show this help
        """;

    private static int Main(string[] args)
    {
        try
        {
            Arguments? arguments = Arguments.Parse(args);
            if (arguments is null)
            {
                Console.WriteLine(Usage);
                return 0;
            }
            Run(arguments);
            return 0;
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException or ModelFormatException)
        {
            // Expected failures (bad arguments, missing or broken model files) get one line, not a stack trace.
            Console.Error.WriteLine("error: " + Describe(e));
            return 2;
        }
    }

    /// <summary>The message on one line, without the " (Parameter 'x')" and "Actual value was" that ArgumentException adds.</summary>
    private static string Describe(Exception e)
    {
        string message = e.Message.Split('\n')[0].TrimEnd();
        return e is ArgumentException { ParamName: string name } ? message.Replace($" (Parameter '{name}')", "") : message;
    }

    private static void Run(Arguments arguments)
    {
        using Stories260K model = Stories260K.Load(arguments.ModelPath);
        Tokenizer tokenizer = LlamaTokenizers.Load(arguments.ModelPath);
        using ILlamaSession session = model.CreateSession();
        var generator = new TextGenerator(session, tokenizer);
        var options = new GenerationOptions
        {
            MaxNewTokens = arguments.MaxTokens,
            Sampling = new SamplingOptions { Temperature = arguments.Temperature, TopP = arguments.TopP, Seed = arguments.Seed },
        };
        // Generate checks the options and the prompt's length before anything is printed.
        IEnumerable<string> story = generator.Generate(arguments.Prompt, options);

        // UTF-8 everywhere: stories may contain characters outside the console's default code page.
        Console.OutputEncoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
        TextWriter stdout = Console.Out;
        stdout.Write(arguments.Prompt);
        stdout.Flush();
        foreach (string chunk in story)
        {
            stdout.Write(chunk);
            stdout.Flush();
        }
        stdout.WriteLine();

        GenerationStats stats = generator.LastStats!;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"generated {stats.GeneratedTokens} tokens in {stats.DecodeTime.TotalSeconds:0.00} s: {stats.DecodeTokensPerSecond:0} tok/s (prompt {stats.PromptTokens} tokens: {stats.PrefillTokensPerSecond:0} tok/s)"));
    }

    private sealed record Arguments(string ModelPath, string Prompt, int MaxTokens, float Temperature, float TopP, ulong? Seed)
    {
        /// <summary>The parsed command line, or null when help was asked for.</summary>
        public static Arguments? Parse(string[] args)
        {
            string? modelPath = null;
            string prompt = "";
            int maxTokens = 256;
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
                    case "--prompt": prompt = value; break;
                    case "--max-tokens": maxTokens = ParseNumber<int>(name, value, n => n >= 0, "an integer >= 0"); break;
                    case "--temperature": temperature = ParseNumber<float>(name, value, t => t >= 0 && float.IsFinite(t), "a number >= 0"); break;
                    case "--top-p": topP = ParseNumber<float>(name, value, p => p is >= 0 and <= 1, "a number from 0 to 1"); break;
                    case "--seed": seed = ParseNumber<ulong>(name, value, _ => true, "an integer from 0 to 2^64-1"); break;
                    default: throw new ArgumentException($"unknown option '{name}' (see --help)");
                }
            }
            return new Arguments(modelPath ?? DefaultModelPath(), prompt, maxTokens, temperature, topP, seed);
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
#if STORIES_GGUF
            return Path.GetFullPath(Path.Combine(root, "..", "shared", "models", "stories260K", "stories260K-f32.gguf"));
#else
            return Path.GetFullPath(Path.Combine(root, "..", "shared", "models", "stories260K", "hf"));
#endif
        }
    }
}

/// <summary>
/// stories260K (Karpathy's tinyllamas), compiled from its config.json at build time, or from its GGUF's header when built
/// with -p:StoriesFromGguf=true (see Stories.csproj).
/// </summary>
#if STORIES_GGUF
[LlamaModel("stories260K/stories260K-f32.gguf")]
#else
[LlamaModel("stories260K/hf/config.json")]
#endif
internal partial class Stories260K;
