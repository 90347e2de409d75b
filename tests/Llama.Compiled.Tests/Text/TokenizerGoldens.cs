using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using Llama.Compiled.Tools;

namespace Llama.Compiled.Tests;

/// <summary>
/// Hugging Face's own tokenizations (<c>../shared/models/tokenizers/NAME/goldens.jsonl</c>, made with
/// <c>@huggingface/tokenizers</c>, see that folder's README) and the tokenizers they belong to, loaded once.
/// </summary>
internal static class TokenizerGoldens
{
    public sealed record Golden(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded)
    {
        public override string ToString() => JsonSerializer.Serialize(Text);
    }

    public static readonly string[] Names = ["llama3", "qwen3"];

    private static readonly ConcurrentDictionary<string, ByteLevelBpeTokenizer> Loaded = new();
    private static readonly ConcurrentDictionary<string, Tokenizer> FromGguf = new();

    public static string Folder(string name) => Path.Combine(TestPaths.Tokenizers, name);

    public static ByteLevelBpeTokenizer Tokenizer(string name) =>
        Loaded.GetOrAdd(name, n => (ByteLevelBpeTokenizer)LlamaTokenizers.Load(Folder(n)));

    /// <summary>The tokenizer read back from a GGUF file that holds only the tokenizer.json's vocabulary (written once per run).</summary>
    public static Tokenizer GgufTokenizer(string name) => FromGguf.GetOrAdd(name, n =>
    {
        string dir = Directory.CreateTempSubdirectory("llama-bpe-gguf-").FullName;
        string path = Path.Combine(dir, n + ".gguf");
        try
        {
            using (var writer = new GgufWriter(path))
            {
                writer.AddString("general.architecture", "llama");
                GgufBpeVocabulary.FromTokenizer(Tokenizer(n)).AddTo(writer);
                writer.Finish();
            }
            return Llama.Compiled.GgufTokenizer.Load(path);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    });

    /// <summary>Hugging Face's tokenizations of the shared corpus and of this repository's extra strings (<c>tests/data/tokenizers</c>).</summary>
    public static IReadOnlyList<Golden> Read(string name)
    {
        var goldens = new List<Golden>(ReadFile(Path.Combine(Folder(name), "goldens.jsonl")));
        goldens.AddRange(ReadExtra(name));
        return goldens;
    }

    /// <summary>Only the extra strings' goldens (see tests/data/tokenizers/README.md).</summary>
    public static IReadOnlyList<Golden> ReadExtra(string name) =>
        ReadFile(Path.Combine(TestPaths.RepoRoot, "tests", "data", "tokenizers", name, "goldens.jsonl"));

    private static List<Golden> ReadFile(string path)
    {
        var goldens = new List<Golden>();
        foreach (string line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line))
                continue;
            using JsonDocument doc = JsonDocument.Parse(line);
            JsonElement e = doc.RootElement;
            goldens.Add(new Golden(
                e.GetProperty("text").GetString()!,
                e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                e.GetProperty("ids_with_special").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                e.GetProperty("decoded").GetString()!));
        }
        return goldens;
    }

    public static string[] Corpus()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.Tokenizers, "corpus.json")));
        return doc.RootElement.EnumerateArray().Select(e => e.GetString()!).ToArray();
    }

    public static string Show(IEnumerable<int> ids) => "[" + string.Join(",", ids) + "]";
}
