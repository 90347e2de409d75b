using System;
using System.Collections.Generic;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;

namespace Llama.Compiled;

/// <summary>
/// Where a <see cref="WeightLoading.Map"/> load keeps the tensors it must convert (Q8_0/Q4_0/Q4_K blocks rearranged into the
/// kernels' layout, F32/F16/BF16 quantized to the compiled format, block formats expanded to F32): a cache file, written
/// by the first load and mapped by every later one, so that no load holds a second, private copy of the weights.
/// </summary>
/// <remarks>
/// <para>Place: <c>&lt;weights file&gt;.llama-compiled-cache</c> beside the weights file; where that folder is not
/// writable, <c>&lt;user cache&gt;/llama-compiled/&lt;file name&gt;.&lt;hash of its full path&gt;.llama-compiled-cache</c>
/// (<c>$XDG_CACHE_HOME</c>, else <c>~/.cache</c>; the local application data folder on Windows). The environment
/// variable <c>LLAMA_COMPILED_CACHE_DIR</c> names one folder to use instead of both. Beside the model is the first
/// choice because the cache is as large as the converted tensors: deleting the model deletes its cache too.</para>
/// <para>Layout: a 4 KB header (magic, format version, <see cref="BlockQuantization.KernelLayoutVersion"/>, file
/// length, where the index is and its hash, the header's own hash), each tensor at a 4 KB-aligned offset, then the
/// index: each source file's length, modification time and a hash of its first 64 KB (the header), and per tensor its
/// name, compute format, shape, stored type, place in the source, place in the cache and a sampled hash of its cached
/// bytes.</para>
/// <para>A cache is used only when all of that matches: a stale (the weights changed), truncated, corrupt or foreign
/// file is ignored and rebuilt. Tensor data is checked by 16 samples of 64 bytes per tensor, not scanned, so that a load
/// touches no page the first forward pass would not. A build writes a temporary file in the cache's folder, flushes it
/// to disk and renames it over the cache: a concurrent load sees the old file or the complete new one, never a part.
/// A load whose requests the cache does not hold (a model compiled to other formats from the same file) rebuilds it
/// with its own tensors.</para>
/// </remarks>
internal sealed unsafe class WeightCache : IDisposable
{
    /// <summary>The environment variable naming a folder for cache files, used instead of the weights' folder and the user cache.</summary>
    public const string DirectoryVariable = "LLAMA_COMPILED_CACHE_DIR";

    /// <summary>What a cache file's name ends with.</summary>
    public const string Extension = ".llama-compiled-cache";

    /// <summary>Bump when the file layout below changes.</summary>
    private const int FormatVersion = 1;

    private const int PageBytes = 4096;
    /// <summary>Bytes at the start of each weights file that identify it besides length and time: the header, which the reader has read already.</summary>
    private const int SourceHeaderBytes = 64 << 10;
    private const int HeaderBytes = PageBytes;
    private const ulong Magic = 0x45484341_43434C4CUL; // "LLCCACHE" little-endian

    /// <summary>Bytes written per call (a span holds at most 2 GB).</summary>
    private const int WriteChunkBytes = 1 << 30;

    /// <summary>A temporary file not written to for this long belongs to a load that died; a later build deletes it.</summary>
    private static readonly TimeSpan AbandonedAfter = TimeSpan.FromHours(1);

    private readonly string _source;
    private readonly SourceFile[] _sourceFiles;
    private readonly IReadOnlyList<string> _candidates;
    private readonly MappedFile? _existing;
    private readonly Dictionary<(string Name, WeightFormat Format), CachedTensor> _existingTensors = new();
    private readonly List<(CachedTensor Tensor, nint Data)> _served = []; // this load's tensors, in request order
    private Build? _build;
    private bool _buildFailed;
    private bool _completed; // after Complete, a miss is converted into memory: the file may already be in place

    private WeightCache(string source, SourceFile[] sourceFiles, IReadOnlyList<string> candidates, MappedFile? existing)
    {
        _source = source;
        _sourceFiles = sourceFiles;
        _candidates = candidates;
        _existing = existing;
    }

    /// <summary>The cache file this load maps, null if none was valid.</summary>
    public string? ExistingPath => _existing?.Path;

    /// <summary>The temporary file this load is writing, null if it writes none.</summary>
    public string? BuildPath => _build?.TempPath;

    /// <summary>
    /// Finds the cache of <paramref name="source"/> (its weights mapped as <paramref name="files"/>): the first valid one
    /// of the places <paramref name="directory"/> and <paramref name="userDirectory"/> name (see the remarks on the class).
    /// </summary>
    public static WeightCache Open(string source, IReadOnlyList<MappedFile> files, string? directory, string? userDirectory)
    {
        var sourceFiles = new SourceFile[files.Count];
        for (int i = 0; i < files.Count; i++)
        {
            // Not the tensors' bytes: reading a sample of each would map pages a cached load never reads otherwise (with
            // large folios, 2 MB per touch).
            ulong headerHash = Fnv(Offset, new ReadOnlySpan<byte>(files[i].Pointer, (int)Math.Min(SourceHeaderBytes, files[i].Length)));
            sourceFiles[i] = new SourceFile(files[i], System.IO.Path.GetFileName(files[i].Path), files[i].Length, File.GetLastWriteTimeUtc(files[i].Path).Ticks, headerHash);
        }

        List<string> candidates = CandidatePaths(source, directory, userDirectory);
        foreach (string candidate in candidates)
        {
            var cache = TryOpenExisting(source, sourceFiles, candidates, candidate);
            if (cache is not null)
                return cache;
        }
        return new WeightCache(source, sourceFiles, candidates, null);
    }

    /// <summary>The folder the environment names for cache files (<see cref="DirectoryVariable"/>), null if it names none.</summary>
    public static string? ConfiguredDirectory() =>
        Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } directory ? directory : null;

    /// <summary>This user's cache folder for Llama.Compiled: <c>$XDG_CACHE_HOME</c> or <c>~/.cache</c> (local application data on Windows), then <c>llama-compiled</c>.</summary>
    public static string? UserDirectory()
    {
        string? root = OperatingSystem.IsWindows() ? Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData)
            : Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg && System.IO.Path.IsPathRooted(xdg) ? xdg
            : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) is { Length: > 0 } home ? System.IO.Path.Combine(home, ".cache")
            : null;
        return string.IsNullOrEmpty(root) ? null : System.IO.Path.Combine(root, "llama-compiled");
    }

    /// <summary>Where the cache of <paramref name="source"/> may be, in the order tried.</summary>
    public static List<string> CandidatePaths(string source, string? directory, string? userDirectory)
    {
        // In a shared folder, files of one name from different folders are told apart by a hash of the full path.
        string sharedName = $"{System.IO.Path.GetFileName(source)}.{Fnv(Offset, Encoding.UTF8.GetBytes(source)):x16}{Extension}";
        if (directory is not null)
            return [System.IO.Path.Combine(System.IO.Path.GetFullPath(directory), sharedName)];
        var paths = new List<string> { source + Extension };
        if (userDirectory is not null)
            paths.Add(System.IO.Path.Combine(userDirectory, sharedName));
        return paths;
    }

    /// <summary>
    /// The tensor <paramref name="tensor"/> converted to <paramref name="format"/> (<paramref name="rows"/> ×
    /// <paramref name="cols"/>, <paramref name="bytes"/> bytes) from the cache, else converted now and written to the
    /// cache being built; null when no cache can be written (the caller converts into memory of its own).
    /// </summary>
    public byte* Get(TensorInfo tensor, long rows, int cols, WeightFormat format, long bytes)
    {
        var wanted = new CachedTensor(tensor.Name, format, rows, cols, tensor.DType, FileIndex(tensor.File), tensor.Offset, tensor.ByteLength, 0, bytes, 0);
        if (_existingTensors.TryGetValue((tensor.Name, format), out CachedTensor? cached) && cached.Describes(wanted)
            && SampledHash(_existing!.Pointer + cached.DataOffset, cached.DataLength) == cached.DataHash)
        {
            byte* data = _existing.Pointer + cached.DataOffset;
            _served.Add((cached, (nint)data));
            return data;
        }
        if (_buildFailed || _completed)
            return null;
        try
        {
            _build ??= Build.Start(_candidates);
            if (_build is null)
            {
                _buildFailed = true;
                return null;
            }
            byte* source = tensor.File.Pointer + tensor.Offset;
            (CachedTensor written, nint data) = _build.Add(wanted, destination => TensorConversion.Convert(tensor.DType, source, rows, cols, format, destination));
            _served.Add((written, data));
            // This process reads the cache from now on: the source's pages leave its resident set (not the page cache).
            tensor.File.ReleasePages(tensor.Offset, tensor.ByteLength);
            return (byte*)data;
        }
        catch (IOException)
        {
            AbandonBuild(); // a full disk, a folder removed: this load converts the rest into memory
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            AbandonBuild();
            return null;
        }
    }

    /// <summary>
    /// Called when the model has requested every tensor: a build writes the tensors this load took from the old cache,
    /// the index and the header, flushes the file to disk and renames it into place.
    /// </summary>
    public void Complete()
    {
        if (_completed)
            return;
        _completed = true;
        if (_build is null)
            return;
        try
        {
            var index = new List<CachedTensor>(_served.Count);
            foreach ((CachedTensor tensor, nint data) in _served)
                index.Add(_build.Holds(tensor) ? tensor : _build.Append(tensor, (byte*)data)); // a tensor from the old cache is copied
            _build.Finish(IndexBytes(index));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            AbandonBuild();
        }
    }

    private void AbandonBuild()
    {
        _buildFailed = true;
        _build?.Abandon();
    }

    /// <summary>Unmaps the cache; a build not completed is deleted (its mappings stay valid until then).</summary>
    public void Dispose()
    {
        _build?.Abandon();
        _build?.Dispose();
        _existing?.Dispose();
    }

    private int FileIndex(MappedFile file)
    {
        for (int i = 0; i < _sourceFiles.Length; i++)
        {
            if (_sourceFiles[i].File == file)
                return i;
        }
        throw new InvalidOperationException($"{file.Path} is not one of the weights' files");
    }

    private static WeightCache? TryOpenExisting(string source, SourceFile[] sourceFiles, List<string> candidates, string path)
    {
        MappedFile file;
        try
        {
            if (!File.Exists(path) || new FileInfo(path).Length < HeaderBytes)
                return null;
            file = MappedFile.Open(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ModelFormatException)
        {
            return null;
        }
        try
        {
            var cache = new WeightCache(source, sourceFiles, candidates, file);
            if (cache.ReadIndex())
                return cache;
        }
        catch (Exception e) when (e is EndOfStreamException or ArgumentException or IOException or FormatException)
        {
            // An index that does not parse is a corrupt cache, like one whose hash differs.
        }
        file.Dispose();
        return null;
    }

    /// <summary>Checks the header, the index and the source files' identity, and reads the index; false if the cache is not valid.</summary>
    private bool ReadIndex()
    {
        MappedFile file = _existing!;
        var header = new ReadOnlySpan<byte>(file.Pointer, HeaderBytes);
        if (MemoryMarshal.Read<ulong>(header) != Magic || MemoryMarshal.Read<int>(header[8..]) != FormatVersion
            || MemoryMarshal.Read<int>(header[12..]) != BlockQuantization.KernelLayoutVersion
            || MemoryMarshal.Read<long>(header[16..]) != file.Length
            || MemoryMarshal.Read<ulong>(header[48..]) != Fnv(Offset, header[..48]))
            return false;
        long indexOffset = MemoryMarshal.Read<long>(header[24..]), indexLength = MemoryMarshal.Read<long>(header[32..]);
        if (indexOffset < HeaderBytes || indexLength <= 0 || indexLength > int.MaxValue || indexOffset > file.Length - indexLength)
            return false;
        var index = new ReadOnlySpan<byte>(file.Pointer + indexOffset, (int)indexLength);
        if (Fnv(Offset, index) != MemoryMarshal.Read<ulong>(header[40..]))
            return false;

        using var reader = new BinaryReader(new UnmanagedMemoryStream(file.Pointer + indexOffset, indexLength), Encoding.UTF8);
        if (reader.ReadInt32() != _sourceFiles.Length)
            return false;
        foreach (SourceFile source in _sourceFiles)
        {
            if (reader.ReadString() != source.Name || reader.ReadInt64() != source.Length || reader.ReadInt64() != source.LastWriteTicks || reader.ReadUInt64() != source.HeaderHash)
                return false;
        }
        int count = reader.ReadInt32();
        for (int i = 0; i < count; i++)
        {
            CachedTensor tensor = CachedTensor.Read(reader);
            if (tensor.DataOffset < HeaderBytes || tensor.DataLength < 0 || tensor.DataOffset > indexOffset - tensor.DataLength)
                return false;
            _existingTensors[(tensor.Name, tensor.Format)] = tensor;
        }
        return true;
    }

    private byte[] IndexBytes(List<CachedTensor> tensors)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(_sourceFiles.Length);
            foreach (SourceFile source in _sourceFiles)
            {
                writer.Write(source.Name);
                writer.Write(source.Length);
                writer.Write(source.LastWriteTicks);
                writer.Write(source.HeaderHash);
            }
            writer.Write(tensors.Count);
            foreach (CachedTensor tensor in tensors)
                tensor.Write(writer);
        }
        return stream.ToArray();
    }

    /// <summary>FNV-1a over <paramref name="length"/> and 16 samples of 64 bytes spread over the range: a check that reads 16 pages at most.</summary>
    internal static ulong SampledHash(byte* start, long length, ulong hash = Offset)
    {
        const int Samples = 16, SampleBytes = 64;
        hash = Fnv(hash, BitConverter.GetBytes(length));
        for (int i = 0; i < Samples; i++)
        {
            long offset = Math.Max(0, (length - SampleBytes) * i / (Samples - 1));
            hash = Fnv(hash, new ReadOnlySpan<byte>(start + offset, (int)Math.Min(SampleBytes, length - offset)));
        }
        return hash;
    }

    /// <summary>FNV-1a's offset basis.</summary>
    internal const ulong Offset = 14695981039346656037UL;

    internal static ulong Fnv(ulong hash, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
            hash = (hash ^ b) * 1099511628211UL;
        return hash;
    }

    /// <summary>One weights file as the cache identifies it: name, length, modification time and a hash of its first 64 KB.</summary>
    private sealed record SourceFile(MappedFile File, string Name, long Length, long LastWriteTicks, ulong HeaderHash);

    /// <summary>One converted tensor: what it was made from and where it lies in the cache file.</summary>
    internal sealed record CachedTensor(string Name, WeightFormat Format, long Rows, int Cols, string DType, int SourceFile, long SourceOffset,
        long SourceLength, long DataOffset, long DataLength, ulong DataHash)
    {
        /// <summary>True when this entry was made from the same bytes, the same way, as <paramref name="wanted"/> asks for.</summary>
        public bool Describes(CachedTensor wanted) =>
            Name == wanted.Name && Format == wanted.Format && Rows == wanted.Rows && Cols == wanted.Cols && DType == wanted.DType
            && SourceFile == wanted.SourceFile && SourceOffset == wanted.SourceOffset && SourceLength == wanted.SourceLength
            && DataLength == wanted.DataLength;

        public static CachedTensor Read(BinaryReader r) =>
            new(r.ReadString(), (WeightFormat)r.ReadInt32(), r.ReadInt64(), r.ReadInt32(), r.ReadString(), r.ReadInt32(), r.ReadInt64(),
                r.ReadInt64(), r.ReadInt64(), r.ReadInt64(), r.ReadUInt64());

        public void Write(BinaryWriter w)
        {
            w.Write(Name);
            w.Write((int)Format);
            w.Write(Rows);
            w.Write(Cols);
            w.Write(DType);
            w.Write(SourceFile);
            w.Write(SourceOffset);
            w.Write(SourceLength);
            w.Write(DataOffset);
            w.Write(DataLength);
            w.Write(DataHash);
        }
    }

    /// <summary>
    /// A cache file being written: a temporary file beside its final path. Each tensor is converted into scratch memory,
    /// written, and mapped back read-only from the file (the pages just written are in the page cache), so the load holds
    /// no private copy of it.
    /// </summary>
    internal sealed class Build : IDisposable
    {
        private readonly FileStream _stream;
        private readonly List<(MemoryMappedFile Map, MemoryMappedViewAccessor View)> _views = [];
        private readonly HashSet<CachedTensor> _written = [];
        private long _end = HeaderBytes;
        private bool _finished;
        private bool _abandoned;

        private Build(string tempPath, string finalPath, FileStream stream)
        {
            TempPath = tempPath;
            FinalPath = finalPath;
            _stream = stream;
        }

        public string TempPath { get; }

        public string FinalPath { get; }

        /// <summary>A build in the first of <paramref name="candidates"/> whose folder takes a new file; null if none does.</summary>
        public static Build? Start(IReadOnlyList<string> candidates)
        {
            foreach (string finalPath in candidates)
            {
                string tempPath = $"{finalPath}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
                try
                {
                    Directory.CreateDirectory(System.IO.Path.GetDirectoryName(finalPath)!);
                    var stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete);
                    DeleteAbandoned(finalPath);
                    return new Build(tempPath, finalPath, stream);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Not writable (a read-only model folder, no home): try the next place.
                }
            }
            return null;
        }

        /// <summary>Deletes temporary files of <paramref name="finalPath"/> that no load has written to for <see cref="AbandonedAfter"/>.</summary>
        private static void DeleteAbandoned(string finalPath)
        {
            string folder = System.IO.Path.GetDirectoryName(finalPath)!;
            foreach (string file in Directory.EnumerateFiles(folder, System.IO.Path.GetFileName(finalPath) + ".*.tmp"))
            {
                try
                {
                    if (DateTime.UtcNow - File.GetLastWriteTimeUtc(file) > AbandonedAfter)
                        File.Delete(file);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Another process deleted it first, or may not: it only costs disk space.
                }
            }
        }

        public bool Holds(CachedTensor tensor) => _written.Contains(tensor);

        /// <summary>Converts a tensor with <paramref name="convert"/> into the file and maps it back.</summary>
        public (CachedTensor Tensor, nint Data) Add(CachedTensor wanted, ConvertInto convert)
        {
            byte* scratch = MappedFile.AllocateWeightMemory((nuint)wanted.DataLength);
            try
            {
                convert(scratch);
                CachedTensor written = Append(wanted, scratch);
                return (written, (nint)MapBack(written));
            }
            finally
            {
                NativeMemory.AlignedFree(scratch);
            }
        }

        /// <summary>Writes <paramref name="tensor"/>'s bytes from <paramref name="data"/> at the next page.</summary>
        public CachedTensor Append(CachedTensor tensor, byte* data)
        {
            long offset = (_end + PageBytes - 1) / PageBytes * PageBytes;
            for (long done = 0; done < tensor.DataLength;)
            {
                int chunk = (int)Math.Min(WriteChunkBytes, tensor.DataLength - done);
                RandomAccess.Write(_stream.SafeFileHandle, new ReadOnlySpan<byte>(data + done, chunk), offset + done);
                done += chunk;
            }
            _end = offset + tensor.DataLength;
            CachedTensor written = tensor with { DataOffset = offset, DataHash = SampledHash(data, tensor.DataLength) };
            _written.Add(written);
            return written;
        }

        private byte* MapBack(CachedTensor tensor)
        {
            if (tensor.DataLength == 0)
                return null;
            // A map of the file as long as it is now: the regions of later tensors do not exist yet.
            MemoryMappedFile map = MemoryMappedFile.CreateFromFile(_stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
            MemoryMappedViewAccessor view;
            try
            {
                view = map.CreateViewAccessor(tensor.DataOffset, tensor.DataLength, MemoryMappedFileAccess.Read);
            }
            catch
            {
                map.Dispose();
                throw;
            }
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            _views.Add((map, view));
            return pointer + view.PointerOffset;
        }

        /// <summary>Writes the index and the header, flushes the file to disk and renames it into place.</summary>
        public void Finish(byte[] index)
        {
            long indexOffset = _end;
            RandomAccess.Write(_stream.SafeFileHandle, index, indexOffset);
            long length = indexOffset + index.Length;
            byte[] header = new byte[HeaderBytes];
            var span = header.AsSpan();
            MemoryMarshal.Write(span, Magic);
            MemoryMarshal.Write(span[8..], FormatVersion);
            MemoryMarshal.Write(span[12..], BlockQuantization.KernelLayoutVersion);
            MemoryMarshal.Write(span[16..], length);
            MemoryMarshal.Write(span[24..], indexOffset);
            MemoryMarshal.Write(span[32..], (long)index.Length);
            MemoryMarshal.Write(span[40..], Fnv(Offset, index));
            MemoryMarshal.Write(span[48..], Fnv(Offset, span[..48]));
            RandomAccess.Write(_stream.SafeFileHandle, header, 0);
            // On disk before the rename: after a crash the name must never point at a file whose data was not written.
            _stream.Flush(flushToDisk: true);
            File.Move(TempPath, FinalPath, overwrite: true);
            _finished = true;
        }

        /// <summary>Deletes the temporary file unless it was renamed into place; mapped tensors stay readable.</summary>
        public void Abandon()
        {
            if (_finished || _abandoned)
                return;
            _abandoned = true;
            try
            {
                File.Delete(TempPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Left for a later build to delete (DeleteAbandoned).
            }
        }

        public void Dispose()
        {
            foreach ((MemoryMappedFile map, MemoryMappedViewAccessor view) in _views)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
                map.Dispose();
            }
            _stream.Dispose();
        }
    }

    /// <summary>Writes a converted tensor to <paramref name="destination"/>.</summary>
    internal delegate void ConvertInto(byte* destination);
}
