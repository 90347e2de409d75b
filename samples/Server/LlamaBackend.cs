using System;
using System.IO;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled.Server;

/// <summary>
/// The loaded model and what serves it: one <see cref="BatchedGenerator"/> that every request's generation
/// shares, a <see cref="LlamaChatClient"/> whose prompt rendering and option mapping /v1/chat/completions uses (so
/// its answers are those of an in-process chat client), and an embedding generator.
/// </summary>
public sealed class LlamaBackend : IDisposable
{
    private LlamaBackend(ILlamaModel model, Tokenizer tokenizer, ChatTemplate template, string modelId, BatchedGeneratorOptions options)
    {
        Model = model;
        Tokenizer = tokenizer;
        ModelId = modelId;
        Created = DateTimeOffset.UtcNow;
        Generator = new BatchedGenerator(model, tokenizer, options);
        // What requests leave unset: OpenAI's defaults (temperature 1, top_p 1), and no token limit but the context.
        var defaults = new GenerationOptions { MaxNewTokens = model.Shape.MaxContext };
        Chat = new LlamaChatClient(Generator, template, defaults, modelId);
        Embeddings = new LlamaEmbeddingGenerator(model, tokenizer, modelId);
    }

    /// <summary>Loads the model at <see cref="ServerOptions.ModelPath"/> (compiled for stories260K's shape) with its tokenizer and chat template.</summary>
    /// <param name="options">The server's options.</param>
    /// <param name="meterFactory">Creates the generator's meter ("Llama.Compiled": queue length, active sequences, tokens, time to first token).</param>
    public static LlamaBackend Load(ServerOptions options, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Stories260K model = Stories260K.Load(options.ModelPath);
        try
        {
            Tokenizer tokenizer = LlamaTokenizers.Load(options.ModelPath);
            ChatTemplate template = options.Template is "auto"
                ? ChatTemplate.FromTokenizerConfig(options.ModelPath)
                : ChatTemplate.FromName(options.Template);
            var generatorOptions = new BatchedGeneratorOptions
            {
                MaxSequences = options.MaxSequences,
                MaxQueue = options.MaxQueue,
                Threads = options.Threads,
                MaxBatchTokens = Math.Max(64, options.MaxSequences),
                MeterFactory = meterFactory,
            };
            return new LlamaBackend(model, tokenizer, template, ModelName(options.ModelPath), generatorOptions);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The model's name: its folder's (or file's) name; for a Hugging Face "hf" folder, the folder above it.</summary>
    public static string ModelName(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        string? name = Directory.Exists(full) ? Path.GetFileName(full) : Path.GetFileNameWithoutExtension(full);
        string? folder = Directory.Exists(full) ? full : Path.GetDirectoryName(full);
        // Generic names (a Hugging Face "hf" folder, "model.safetensors") say less than the folder they are in.
        while (name is "hf" or "model" or "weights" && folder is not null)
        {
            if (name != Path.GetFileName(folder))
            {
                name = Path.GetFileName(folder);
                continue;
            }
            folder = Path.GetDirectoryName(folder);
            name = folder is null ? name : Path.GetFileName(folder);
        }
        return string.IsNullOrEmpty(name) ? "model" : name;
    }

    public ILlamaModel Model { get; }
    public Tokenizer Tokenizer { get; }
    public string ModelId { get; }
    public DateTimeOffset Created { get; }
    public BatchedGenerator Generator { get; }
    public LlamaChatClient Chat { get; }
    public IEmbeddingGenerator<string, Embedding<float>> Embeddings { get; }

    public int MaxContext => Model.Shape.MaxContext;
    public int QueueLength => Generator.QueueLength;
    public int ActiveSequences => Generator.ActiveSequences;

    public void Dispose()
    {
        Generator.Dispose();
        Chat.Dispose();
        Embeddings.Dispose();
        Model.Dispose();
    }
}

/// <summary>stories260K (Karpathy's tinyllamas), compiled from its config.json at build time (see Server.csproj).</summary>
[LlamaModel("stories260K/hf/config.json")]
public partial class Stories260K;
